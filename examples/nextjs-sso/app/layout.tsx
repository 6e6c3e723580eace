import type { ReactNode } from "react";

export const metadata = { title: "Notes (atsso example)" };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", maxWidth: 640, margin: "3rem auto", padding: "0 1rem" }}>
        <h1>Notes</h1>
        <p style={{ color: "#666" }}>An atsso tenant app: Next.js, PKCE by hand, tokens in httpOnly cookies.</p>
        {children}
      </body>
    </html>
  );
}
