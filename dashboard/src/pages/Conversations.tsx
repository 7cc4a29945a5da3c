// Conversations: WhatsApp and voice sessions; one session's messages (live), slots, summary.
import { useEffect, useState } from "react";
import { Link, useParams } from "react-router";
import { api, unwrap, type Schemas, type Session, type SessionSummary } from "../api/client";
import { follow } from "../api/sse";
import { Json } from "../components/Json";
import { ErrorNote, StatusBadge, When } from "../components/Status";

type Message = Schemas["MessageOut"];

export default function Conversations() {
  const { id } = useParams();
  const [sessions, setSessions] = useState<SessionSummary[]>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    api.GET("/sessions", { params: { query: { limit: 50 } } }).then((r) => setSessions(unwrap(r).sessions), setError);
  }, []);
  return (
    <section>
      <h1>Conversations</h1>
      <ErrorNote error={error} />
      <div className="split">
        <nav aria-label="Sessions" className="sessions">
          {sessions && sessions.length === 0 && <p className="muted">No conversations yet.</p>}
          <ul>
            {sessions?.map((s) => (
              <li key={s.id} className={s.id === id ? "current" : ""}>
                <Link to={`/ui/conversations/${s.id}`} aria-current={s.id === id ? "page" : undefined}>
                  <span aria-hidden="true">{s.channel === "voice" ? "☎ " : "✆ "}</span>
                  {s.user_ref}
                </Link>
                <div className="muted small">
                  {s.status}{s.pending_intent ? ` · ${s.pending_intent}` : ""} · <When at={s.last_activity_at} />
                </div>
                {s.last_message?.text && <div className="small">{s.last_message.direction === "in" ? "← " : "→ "}{s.last_message.text}</div>}
              </li>
            ))}
          </ul>
        </nav>
        {id ? <SessionDetail id={id} /> : <p className="muted">Pick a conversation.</p>}
      </div>
    </section>
  );
}

function SessionDetail({ id }: { id: string }) {
  const [session, setSession] = useState<Session>();
  const [messages, setMessages] = useState<Message[]>([]);
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    const controller = new AbortController();
    setMessages([]);
    api.GET("/sessions/{session_id}", { params: { path: { session_id: id } } }).then((r) => setSession(unwrap(r)), setError);
    follow(
      `/sessions/${id}/stream`,
      {
        onEvent(event, data) {
          if (event !== "message") return;
          const message = data as Message;
          setMessages((old) => {
            const known = old.some((m) => m.id === message.id);
            return known ? old.map((m) => (m.id === message.id ? message : m)) : [...old, message];
          });
        },
      },
      controller.signal,
    );
    return () => controller.abort();
  }, [id]);
  if (!session) return error ? <ErrorNote error={error} /> : <p className="muted">Loading…</p>;
  const shown = messages.length ? messages : session.messages;
  return (
    <article className="session" aria-label={`Conversation with ${session.user_ref}`}>
      <h2>{session.user_ref} <StatusBadge status={session.status} /></h2>
      <p className="muted small">{session.channel} · started <When at={session.created_at} /> · last activity <When at={session.last_activity_at} /></p>
      {session.summary && (<><h3>Summary</h3><p>{session.summary}</p></>)}
      {Object.keys(session.slots ?? {}).length > 0 && (<><h3>Slots</h3><Json value={session.slots} label="Slots" /></>)}
      {session.pending && (<><h3>Pending</h3><Json value={session.pending} label="Pending request" /></>)}
      <h3>Messages</h3>
      <ol className="messages">
        {shown.map((m) => (
          <li key={m.id} className={`msg msg-${m.direction}`}>
            <div className="muted small">{m.direction === "in" ? "User" : "Reply"} · <When at={m.created_at} />{m.intent ? ` · ${m.intent}` : ""}</div>
            <div>{m.text ?? m.transcript ?? <span className="muted">(media)</span>}</div>
            {m.trace_id && <Link className="small" to={`/ui/runs?trace=${m.trace_id}`}>trace {m.trace_id.slice(0, 8)}</Link>}
          </li>
        ))}
      </ol>
    </article>
  );
}
