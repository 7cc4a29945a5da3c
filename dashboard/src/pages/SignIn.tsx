// The sign-in page: an API key, or Supabase Auth (password / magic link) when configured.
import { useState, type FormEvent } from "react";
import { useAuth } from "../auth";

export function SignIn() {
  const { config, problem, signInWithKey, signInWithPassword, sendMagicLink } = useAuth();
  const [key, setKey] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const run = (action: () => Promise<void>) => async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    try {
      await action();
    } finally {
      setBusy(false);
    }
  };
  const mode = config?.auth.mode;
  return (
    <main id="main" className="signin">
      <h1>Blueprints</h1>
      {!config && !problem && <p className="muted">Connecting…</p>}
      {problem && <p className="error" role="alert">{problem}</p>}
      {mode === "supabase" && (
        <form onSubmit={run(() => signInWithPassword(email, password))} aria-label="Sign in with email">
          <h2>Sign in</h2>
          <label>Email<input type="email" autoComplete="email" value={email} onChange={(e) => setEmail(e.target.value)} required /></label>
          <label>Password<input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} /></label>
          <div className="row">
            <button type="submit" disabled={busy || !password}>Sign in</button>
            <button type="button" disabled={busy || !email} onClick={run(() => sendMagicLink(email))}>Email me a link</button>
          </div>
        </form>
      )}
      {(mode === "api_key" || mode === "supabase") && (
        <form onSubmit={run(() => signInWithKey(key))} aria-label="Sign in with an API key">
          <h2>{mode === "supabase" ? "Or use an API key" : "Sign in with an API key"}</h2>
          <label>
            API key
            <input type="password" autoComplete="off" value={key} onChange={(e) => setKey(e.target.value)} placeholder="bpk_…" required />
          </label>
          <button type="submit" disabled={busy || !key}>Sign in</button>
          <p className="muted small">A personal key (POST /me/api-keys) or a service key of this deployment. It is kept in this browser.</p>
        </form>
      )}
    </main>
  );
}
