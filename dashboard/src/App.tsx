// Routes and layout. Pages live under /ui/ so that their URLs never collide with the API's
// (GET /runs/{id} is JSON, /ui/runs/{id} is the run view); / opens the workflows list.
import { lazy, Suspense } from "react";
import { BrowserRouter, Navigate, NavLink, Route, Routes } from "react-router";
import { AuthProvider, useAuth } from "./auth";
import { SignIn } from "./pages/SignIn";
import { Workflows } from "./pages/Workflows";

const DraftPage = lazy(() => import("./pages/Draft"));
const WorkflowPage = lazy(() => import("./pages/WorkflowPage"));
const DryRunPage = lazy(() => import("./pages/DryRun"));
const RunsPage = lazy(() => import("./pages/Runs"));
const RunView = lazy(() => import("./pages/RunView"));
const Conversations = lazy(() => import("./pages/Conversations"));
const Connections = lazy(() => import("./pages/Connections"));

function Shell() {
  const { config, me, signOut } = useAuth();
  if (!me) return <SignIn />;
  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="top">
        <span className="brand" aria-hidden="true">◆</span>
        <nav aria-label="Main">
          <NavLink to="/ui/workflows">Workflows</NavLink>
          <NavLink to="/ui/new">New</NavLink>
          <NavLink to="/ui/runs">Runs</NavLink>
          <NavLink to="/ui/conversations">Conversations</NavLink>
          <NavLink to="/ui/connections">Connections</NavLink>
        </nav>
        <span className="who">
          <span className="muted small">{me.user.display_name || me.user.email || "signed in"} ({me.via})</span>
          {config?.auth.mode !== "local" && (
            <button type="button" className="link" onClick={() => void signOut()}>Sign out</button>
          )}
        </span>
      </header>
      <main id="main">
        <Suspense fallback={<p className="muted">Loading…</p>}>
          <Routes>
            <Route path="/" element={<Navigate to="/ui/workflows" replace />} />
            <Route path="/ui" element={<Navigate to="/ui/workflows" replace />} />
            <Route path="/ui/workflows" element={<Workflows />} />
            <Route path="/ui/new" element={<DraftPage />} />
            <Route path="/ui/workflows/:id" element={<WorkflowPage />} />
            <Route path="/ui/workflows/:id/dry-run" element={<DryRunPage />} />
            <Route path="/ui/workflows/:id/runs" element={<RunsPage />} />
            <Route path="/ui/runs" element={<RunsPage />} />
            <Route path="/ui/runs/:id" element={<RunView />} />
            <Route path="/ui/conversations" element={<Conversations />} />
            <Route path="/ui/conversations/:id" element={<Conversations />} />
            <Route path="/ui/connections" element={<Connections />} />
            <Route path="*" element={<NotFound />} />
          </Routes>
        </Suspense>
      </main>
    </>
  );
}

function NotFound() {
  return (
    <section>
      <h1>Not found</h1>
      <p>
        No page here. <NavLink to="/ui/workflows">Back to workflows</NavLink>
      </p>
    </section>
  );
}

export function App() {
  return (
    <BrowserRouter>
      <AuthProvider>
        <Shell />
      </AuthProvider>
    </BrowserRouter>
  );
}
