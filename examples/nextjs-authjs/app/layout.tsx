import type { ReactNode } from "react";

export const metadata = { title: "Photos (atsso example)" };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", maxWidth: 640, margin: "3rem auto", padding: "0 1rem" }}>
        <h1>Photos</h1>
        <p style={{ color: "#666" }}>An atsso tenant app: Next.js with Auth.js v5.</p>
        {children}
      </body>
    </html>
  );
}
