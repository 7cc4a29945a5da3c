// Sign-in: what the deployment wants (GET /config/public) decides the form. "local": nothing;
// "api_key": a personal or service API key kept in this browser; "supabase": Supabase Auth
// (password or magic link) through supabase-js, loaded only then.
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import type { SupabaseClient } from "@supabase/supabase-js";
import { api, ApiFailure, setCredentials, unwrap, type Me, type PublicConfig } from "./api/client";

interface AuthState {
  config: PublicConfig | null;
  me: Me | null;
  /** Why the last sign-in failed, for the form. */
  problem: string | null;
  signInWithKey: (key: string) => Promise<void>;
  signInWithPassword: (email: string, password: string) => Promise<void>;
  sendMagicLink: (email: string) => Promise<void>;
  signOut: () => Promise<void>;
}

const KEY_STORAGE = "blueprints.apiKey";
const AuthContext = createContext<AuthState | null>(null);

export function useAuth(): AuthState {
  const state = useContext(AuthContext);
  if (!state) throw new Error("useAuth outside AuthProvider");
  return state;
}

/** The deployment's sign-in mode (GET /config/public needs no credentials). */
async function loadConfig(): Promise<PublicConfig> {
  return unwrap(await api.GET("/config/public"));
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [config, setConfig] = useState<PublicConfig | null>(null);
  const [me, setMe] = useState<Me | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [supabase, setSupabase] = useState<SupabaseClient | null>(null);

  const identify = useCallback(async () => {
    try {
      setMe(unwrap(await api.GET("/me")));
      setProblem(null);
    } catch (error) {
      setMe(null);
      if (error instanceof ApiFailure && error.status === 401) {
        localStorage.removeItem(KEY_STORAGE);
        setCredentials(async () => ({}));
        setProblem("That key or session was not accepted.");
      } else {
        setProblem(String(error instanceof Error ? error.message : error));
      }
    }
  }, []);

  useEffect(() => {
    void (async () => {
      const loaded = await loadConfig().catch((e: unknown) => {
        setProblem(`The API did not answer: ${e instanceof Error ? e.message : String(e)}`);
        return null;
      });
      if (!loaded) return;
      setConfig(loaded);
      const saved = localStorage.getItem(KEY_STORAGE);
      if (saved) {
        setCredentials(async () => ({ "X-API-Key": saved }));
        await identify();
      } else if (loaded.auth.mode === "supabase" && loaded.auth.supabase_url && loaded.auth.supabase_anon_key) {
        const { createClient } = await import("@supabase/supabase-js");
        const client = createClient(loaded.auth.supabase_url, loaded.auth.supabase_anon_key);
        setSupabase(client);
        const useSession = async () => {
          const { data } = await client.auth.getSession();
          if (!data.session) return false;
          setCredentials(async (): Promise<Record<string, string>> => {
            const current = (await client.auth.getSession()).data.session;
            return current ? { Authorization: `Bearer ${current.access_token}` } : {};
          });
          await identify();
          return true;
        };
        client.auth.onAuthStateChange((event) => {
          if (event === "SIGNED_IN") void useSession();
          if (event === "SIGNED_OUT") setMe(null);
        });
        await useSession();
      } else if (loaded.auth.mode === "local") {
        await identify();
      }
    })();
  }, [identify]);

  const signInWithKey = useCallback(
    async (key: string) => {
      const trimmed = key.trim();
      setCredentials(async () => ({ "X-API-Key": trimmed }));
      localStorage.setItem(KEY_STORAGE, trimmed);
      await identify();
    },
    [identify],
  );

  const signInWithPassword = useCallback(
    async (email: string, password: string) => {
      if (!supabase) return;
      const { error } = await supabase.auth.signInWithPassword({ email, password });
      setProblem(error ? error.message : null);
    },
    [supabase],
  );

  const sendMagicLink = useCallback(
    async (email: string) => {
      if (!supabase) return;
      const { error } = await supabase.auth.signInWithOtp({
        email,
        options: { emailRedirectTo: window.location.href },
      });
      setProblem(error ? error.message : `A sign-in link was sent to ${email}.`);
    },
    [supabase],
  );

  const signOut = useCallback(async () => {
    localStorage.removeItem(KEY_STORAGE);
    setCredentials(async () => ({}));
    await supabase?.auth.signOut();
    setMe(null);
  }, [supabase]);

  return (
    <AuthContext.Provider
      value={{ config, me, problem, signInWithKey, signInWithPassword, sendMagicLink, signOut }}
    >
      {children}
    </AuthContext.Provider>
  );
}
