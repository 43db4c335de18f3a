// The page's one store: the signed-in session and the objects of the chosen zone
// and workspace, fed by SSE watches. Each kind is listed once, then watched from
// the list's resourceVersion; events are applied in resourceVersion order (an
// event older than what is held is ignored), and a `reset` lists again. No polling.

import { reactive } from "vue";
import { Api, ApiError, DoraObject, Scope, Watch, WhoAmI, saveToken, savedToken } from "./api";

interface KindState {
  objects: Record<string, DoraObject>;
  watch: Watch | null;
  error: string;
}

function emptyKind(): KindState {
  return { objects: {}, watch: null, error: "" };
}

export const WATCHED = ["workloads", "containers"] as const;
type Watched = (typeof WATCHED)[number];

export const store = reactive({
  api: null as Api | null,
  me: null as WhoAmI | null,
  zone: "",
  workspace: "",
  zones: [] as string[],
  workspaces: [] as string[],
  kinds: { workloads: emptyKind(), containers: emptyKind() } as Record<Watched, KindState>,
  credits: null as DoraObject | null,
  gpuKinds: [] as string[],
  cpuKinds: [] as string[],
  canSeeNodes: false,
  message: "",
  messageIsError: false,
});

export function scope(): Scope {
  return { zone: store.zone, workspace: store.workspace };
}

export function api(): Api {
  if (!store.api) throw new Error("not signed in");
  return store.api;
}

export function notify(message: string, isError = false): void {
  store.message = message;
  store.messageIsError = isError;
}

export function report(e: unknown): void {
  if (e instanceof ApiError) {
    const fields = e.violations.filter((v) => v.field).map((v) => `${v.field}: ${v.description}`);
    notify(fields.length ? `${e.message} (${fields.join("; ")})` : e.message, true);
  } else {
    notify(String(e), true);
  }
}

export async function signIn(token: string): Promise<void> {
  const candidate = new Api(token.trim());
  const me = await candidate.whoami();
  saveToken(candidate.token);
  store.api = candidate;
  store.me = me;
  store.zone = me.zone;
  store.workspace = me.workspace;
  await loadMenus();
  await openBoard();
}

export async function resume(): Promise<boolean> {
  const token = savedToken();
  if (!token) return false;
  try {
    await signIn(token);
    return true;
  } catch {
    saveToken("");
    return false;
  }
}

export function signOut(): void {
  closeBoard();
  saveToken("");
  store.api = null;
  store.me = null;
  store.zones = [];
  store.workspaces = [];
  store.credits = null;
}

async function names(kind: string): Promise<string[]> {
  try {
    return (await api().list(kind)).items.map((o) => o.metadata.name);
  } catch {
    return []; // the token may not list this kind: the menus keep the user's own
  }
}

// The zones and workspaces the user can use: the ones their User's bindings name
// when they may read it, else what List returns; always their own defaults.
async function loadMenus(): Promise<void> {
  const me = store.me!;
  const zones = new Set<string>([me.zone]);
  const workspaces = new Set<string>([me.workspace]);
  // Without readable bindings, or with one for every workspace ("All"), the
  // workspaces are the ones the user may list.
  let everyWorkspace = true;
  try {
    const user = await api().get("users", me.user);
    const bindings = (user.spec?.resources ?? []) as { zone?: string; workspace?: string }[];
    if (bindings.length) everyWorkspace = bindings.some((b) => !b.workspace || b.workspace === "All");
    for (const binding of bindings) {
      if (binding.zone && binding.zone !== "All") zones.add(binding.zone);
      if (binding.workspace && binding.workspace !== "All") workspaces.add(binding.workspace);
    }
  } catch {
    /* not readable: fall back to the lists */
  }
  for (const zone of await names("zones")) zones.add(zone);
  if (everyWorkspace) for (const ws of await names("workspaces")) workspaces.add(ws);
  store.zones = [...zones].filter(Boolean).sort();
  store.workspaces = [...workspaces].filter(Boolean).sort();
  await loadHardware();
}

// The CPU and GPU products the cluster offers: the Devices service, which every
// user with the seed role may call. Whether the Nodes page is offered: a read of the nodes.
async function loadHardware(): Promise<void> {
  const products = async (kind: "GPU" | "CPU"): Promise<string[]> => {
    try {
      return (await api().devices(kind, { zone: store.zone })).products;
    } catch {
      return []; // not allowed here: only "All" is offered
    }
  };
  const [gpus, cpus] = await Promise.all([products("GPU"), products("CPU")]);
  store.gpuKinds = gpus;
  store.cpuKinds = cpus;
  try {
    await api().list("nodes", { zone: store.zone });
    store.canSeeNodes = true;
  } catch {
    store.canSeeNodes = false;
  }
}

function version(obj: DoraObject): number {
  return Number(obj.metadata.resourceVersion ?? 0);
}

function applyEvent(kind: Watched, type: string, obj: DoraObject): void {
  const objects = store.kinds[kind].objects;
  const held = objects[obj.metadata.name];
  if (held && version(held) >= version(obj)) return; // already seen: never go back
  if (type === "deleted") delete objects[obj.metadata.name];
  else objects[obj.metadata.name] = obj;
  if (kind === "containers") void loadCredits();
}

async function startKind(kind: Watched): Promise<void> {
  const state = store.kinds[kind];
  state.watch?.stop();
  state.error = "";
  const where = scope();
  try {
    const listed = await api().list(kind, where);
    const objects: Record<string, DoraObject> = {};
    for (const obj of listed.items) objects[obj.metadata.name] = obj;
    state.objects = objects;
    const watch = new Watch(api(), kind, where, (type, obj) => applyEvent(kind, type, obj),
      () => void startKind(kind), (message) => { state.error = message; });
    state.watch = watch;
    watch.start(listed.resourceVersion);
  } catch (e) {
    state.objects = {};
    state.error = e instanceof Error ? e.message : String(e);
  }
}

export async function openBoard(): Promise<void> {
  closeBoard();
  await Promise.all(WATCHED.map((kind) => startKind(kind)));
  await loadCredits();
}

export function closeBoard(): void {
  for (const kind of WATCHED) {
    store.kinds[kind].watch?.stop();
    store.kinds[kind] = emptyKind();
  }
}

// The used-credits indicator: the user's Usercredit in this zone, read again when
// a container comes or goes (what changes it), never on a timer.
let creditsPending = false;
export async function loadCredits(): Promise<void> {
  if (!store.me || creditsPending) return;
  creditsPending = true;
  try {
    store.credits = await api().get("usercredits", store.me.user, { zone: store.zone });
  } catch {
    store.credits = null;
  } finally {
    creditsPending = false;
  }
}

export async function choose(zone: string, workspace: string): Promise<void> {
  store.zone = zone;
  store.workspace = workspace;
  await loadHardware();
  await openBoard();
}

// A kind listed once then watched, for as long as a view is open: `onChange` gets
// the objects after each change; the returned function stops it.
export function follow(kind: string, where: Scope, onChange: (objects: Record<string, DoraObject>) => void,
  onError: (message: string) => void): () => void {
  let watch: Watch | null = null;
  let stopped = false;
  let objects: Record<string, DoraObject> = {};
  const start = async (): Promise<void> => {
    try {
      const listed = await api().list(kind, where);
      if (stopped) return;
      objects = {};
      for (const obj of listed.items) objects[obj.metadata.name] = obj;
      onChange(objects);
      watch = new Watch(api(), kind, where, (type, obj) => {
        const held = objects[obj.metadata.name];
        if (held && version(held) >= version(obj)) return;
        if (type === "deleted") delete objects[obj.metadata.name];
        else objects[obj.metadata.name] = obj;
        onChange(objects);
      }, () => void start(), onError);
      watch.start(listed.resourceVersion);
    } catch (e) {
      onError(e instanceof Error ? e.message : String(e));
    }
  };
  void start();
  return () => {
    stopped = true;
    watch?.stop();
  };
}
