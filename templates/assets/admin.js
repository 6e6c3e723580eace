// atsso admin: the only script. Copy buttons for values shown once (client secrets).
document.addEventListener('click', (event) => {
  const button = event.target.closest('[data-copy]')
  if (!button) return
  const field = document.getElementById(button.dataset.copy)
  if (!field) return
  const done = () => { button.textContent = 'Copied'; setTimeout(() => { button.textContent = 'Copy' }, 2000) }
  const fallback = () => { field.select(); try { document.execCommand('copy'); done() } catch (_) { /* selected for manual copy */ } }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(done, fallback)
  } else {
    fallback()
  }
})
