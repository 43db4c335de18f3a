// The desktop app's side of the page (`doractl ui`): the page asks `api/desktop`
// whether it is served by the desktop server. When it is, the server holds the
// profile's token (the page never sees it: a placeholder goes in the header and
// the server puts the real one), the navbar offers the profile's contexts, the
// workload editor has a "Sync folders" tab, and each sync's state arrives over
// Server-Sent Events (EventSource: the cookie goes with it; no polling).

import { reactive } from "vue";
import { ApiError } from "./api";
import { store, signIn, choose } from "./store";

export interface ContextInfo { name: string; endpoint: string; zone: string; workspace: string }
export interface SyncFolder { local: string; volume: string; path: string }
export interface SyncState {
  id: string; context: string; zone: string; workspace: string; workload: string;
  local: string; volume: string; path: string;
  state: "starting" | "syncing" | "idle" | "paused" | "error" | "removed";
  message: string; lastSync: string;
}
interface Described { desktop: boolean; context: string; zone: string; workspace: string; contexts: ContextInfo[] }

export const desktop = reactive({
  on: false,
  context: "",
  contexts: [] as ContextInfo[],
  syncs: {} as Record<string, SyncState>,
});

const PLACEHOLDER = "desktop"; // replaced by the server with the context's token
let events: EventSource | null = null;

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, cache: "no-store" };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`api/${path}`, init);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    let code = "";
    let violations = [];
    try {
      const e = (await response.json()).error ?? {};
      message = e.message ?? message;
      code = e.status ?? "";
      violations = e.violations ?? [];
    } catch { /* not JSON */ }
    throw new ApiError(response.status, code, message, violations);
  }
  return (await response.json()) as T;
}

async function enter(described: Described): Promise<void> {
  desktop.context = described.context;
  desktop.contexts = described.contexts;
  await signIn(PLACEHOLDER);
  if (described.zone || described.workspace) {
    await choose(described.zone || store.zone, described.workspace || store.workspace);
  }
}

// True (and signed in) when the page is served by `doractl ui`.
export async function startDesktop(): Promise<boolean> {
  let described: Described;
  try {
    described = await call<Described>("GET", "desktop");
  } catch {
    return false; // the hosted web app: no such route
  }
  if (!described.desktop) return false;
  desktop.on = true;
  follow();
  await enter(described);
  return true;
}

export async function switchContext(name: string): Promise<void> {
  await enter(await call<Described>("POST", "desktop/context", { context: name }));
}

function follow(): void {
  events?.close();
  events = new EventSource("api/desktop/events");
  events.addEventListener("snapshot", (e) => {
    const all: Record<string, SyncState> = {};
    for (const s of JSON.parse((e as MessageEvent).data) as SyncState[]) all[s.id] = s;
    desktop.syncs = all;
  });
  events.addEventListener("state", (e) => {
    const s = JSON.parse((e as MessageEvent).data) as SyncState;
    if (s.state === "removed") delete desktop.syncs[s.id];
    else desktop.syncs[s.id] = s;
  });
}

export function syncsOf(workload: string): SyncState[] {
  return Object.values(desktop.syncs).filter((s) => s.context === desktop.context &&
    s.zone === store.zone && s.workspace === store.workspace && s.workload === workload);
}

function key(workload: string): Record<string, string> {
  return { zone: store.zone, workspace: store.workspace, workload };
}

export async function loadFolders(workload: string): Promise<SyncFolder[]> {
  const q = new URLSearchParams(key(workload)).toString();
  return (await call<{ folders: SyncFolder[] }>("GET", `desktop/syncs?${q}`)).folders;
}

export async function saveFolders(workload: string, folders: SyncFolder[]): Promise<SyncFolder[]> {
  return (await call<{ folders: SyncFolder[] }>("PUT", "desktop/syncs", { ...key(workload), folders })).folders;
}
