// Types of dingo's browser client (dingo.js beside this file, served at /v1/client.js).
// The contract is SPEC section 3, "Browser client"; docs/client.md has the policies.

export type Transport = "websocket" | "sse" | "poll";

export interface ConnectOptions {
  /** Transports to use, in order of preference. Default: ["websocket", "sse", "poll"]. */
  transports?: Transport[];
  /** A JWT sent on every transport (WebSocket `auth`, SSE and poll `?token=`, REST `Bearer`). */
  token?: string;
  /** Called for a token when none is held, when it expires within 30 s, after close 4001,
   *  and on `token_expiring` (answered with `refresh`, without reconnecting). */
  getToken?: () => Promise<string>;
}

export interface StateEvent {
  state: "connecting" | "connected" | "disconnected";
  /** The transport in use while connected, else null. */
  transport: Transport | null;
  /** Why, when disconnected: "closed", "unauthorized" or "disconnected by the server". */
  reason?: string;
}

export interface Message<D = unknown> {
  channel: string;
  /** EPOCH.SEQ */
  position: string;
  data: D;
}

export interface SubscribedEvent {
  channel: string;
  /** The channel's position when the subscription (re)started. */
  position: string;
  /** False when the messages since the last position could not all be resumed: refetch state. */
  recovered: boolean;
}

export interface ServerError {
  code: "bad_request" | "unauthorized" | "forbidden" | "not_found" | "too_large" | "limit" | "unavailable" | "internal";
  message: string;
}

/** Removes the listener it was returned for. */
export type Remover = () => void;

export interface Subscription<D = unknown> {
  readonly channel: string;
  on(event: "subscribed", fn: (e: SubscribedEvent) => void): Remover;
  /** Each message once, in order of position. */
  on(event: "message", fn: (m: Message<D>) => void): Remover;
  /** The server refused the subscription (e.g. forbidden); it is dropped. */
  on(event: "error", fn: (e: ServerError) => void): Remover;
  /** Removes this subscription and its listeners; the channel is left when it was the last one. */
  unsubscribe(): void;
}

export interface Client {
  on(event: "state", fn: (s: StateEvent) => void): Remover;
  readonly state: { state: StateEvent["state"]; transport: Transport | null };
  subscribe<D = unknown>(channel: string, options?: { since?: string }): Subscription<D>;
  /** Resolves to the message's position (WebSocket `publish`, else REST `POST /v1/publish`). */
  publish(channel: string, data: unknown): Promise<string>;
  /** Stops; removes every listener and timer the client added. */
  close(): void;
  /** What the client holds now (timers, page hooks, listeners): for tests. */
  debug(): { timers: number; hooks: number; listeners: number; subscriptions: number; channels: number; failures: number; closed: boolean };
}

/** origin: the gateway's origin, e.g. "https://example.com" (default: the page's). */
export function connect(origin?: string, options?: ConnectOptions): Client;
