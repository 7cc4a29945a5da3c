// Server-sent events with credentials (EventSource cannot send headers): fetch-event-source,
// resuming with Last-Event-ID after a dropped connection, a bounded number of times in a row.
import { fetchEventSource } from "@microsoft/fetch-event-source";
import { authHeaders } from "./client";

export interface StreamHandlers {
  /** One event: its name (`log`, `run`, `message`) and parsed data. */
  onEvent: (event: string, data: unknown) => void;
  /** The stream ended because the server finished it (e.g. the run is over). */
  onEnd?: () => void;
  /** Live, reconnecting, or given up after MAX_RETRIES failures in a row. */
  onState?: (state: "live" | "reconnecting" | "lost") => void;
}

const MAX_RETRIES = 8;

class Fatal extends Error {}

/** Follow `path` until `signal` aborts or the server ends the stream. */
export function follow(path: string, handlers: StreamHandlers, signal: AbortSignal): void {
  let failures = 0;
  void fetchEventSource(path, {
    signal,
    openWhenHidden: true,
    headers: {},
    async fetch(input, init) {
      const headers = { ...(init?.headers as Record<string, string>), ...(await authHeaders()) };
      return window.fetch(input, { ...init, headers });
    },
    async onopen(response) {
      if (!response.ok) {
        throw response.status >= 400 && response.status < 500 && response.status !== 429
          ? new Fatal(`stream refused: ${response.status}`)
          : new Error(`stream unavailable: ${response.status}`);
      }
      failures = 0;
      handlers.onState?.("live");
    },
    onmessage(message) {
      if (!message.data) return;
      handlers.onEvent(message.event || "message", JSON.parse(message.data));
    },
    onclose() {
      handlers.onEnd?.();
    },
    onerror(error) {
      failures += 1;
      if (error instanceof Fatal || failures > MAX_RETRIES) {
        handlers.onState?.("lost");
        throw error; // stop retrying
      }
      handlers.onState?.("reconnecting");
      return Math.min(500 * 2 ** failures, 10_000);
    },
  }).catch(() => undefined);
}
