// The page's side of dora-web's HTTP API (/api/openapi.json). The token lives in
// sessionStorage and goes in the Authorization header: never in a URL. Watches
// are Server-Sent Events read through fetch (EventSource cannot send the header),
// resumed with Last-Event-ID after a dropped connection.

export interface Metadata {
  name: string;
  zone?: string;
  workspace?: string;
  uid?: string;
  resourceVersion?: number;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { uid?: string; name?: string; kind?: string }[];
}

// An object as `doractl -o json` prints it: the kind's spec and status are open.
export interface DoraObject {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  spec?: any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  status?: any;
}

export interface Violation {
  field: string;
  description: string;
  document?: number;
  line?: number;
  column?: number;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public violations: Violation[] = [],
  ) {
    super(message);
  }
}

export interface WhoAmI {
  user: string;
  tokenId: string;
  zone: string;
  workspace: string;
}

const TOKEN_KEY = "dora.token";

export function savedToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function saveToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function url(path: string, query: Record<string, string | number | undefined> = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== "") params.set(key, String(value));
  }
  const qs = params.toString();
  // Relative to the page: dora-web may sit under a reverse proxy's path.
  return `api/${path}${qs ? "?" + qs : ""}`;
}

function headers(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { Authorization: `Bearer ${token}`, ...extra };
}

async function failure(response: Response): Promise<ApiError> {
  try {
    const body = await response.json();
    const e = body.error ?? {};
    return new ApiError(response.status, e.status ?? "", e.message ?? response.statusText,
      e.violations ?? []);
  } catch {
    return new ApiError(response.status, "", `${response.status} ${response.statusText}`);
  }
}

export interface VolumeFile {
  path: string;
  name: string;
  isDir: boolean;
  size: number;
  mtimeNs: number;
}

export interface TaskJob {
  index: number;
  file: string;
  state: string;
  attempts: number;
  failures: number;
  container: string;
}

// A path inside a volume as URL segments ("a dir/x" -> "a%20dir/x").
const UPLOAD_TRIES = 5;
// Files larger than this are hashed by no one here (the whole file would be read into
// memory): they upload without X-Content-SHA256, so a dropped one starts over.
const HASHED_UP_TO = 512 * 1024 * 1024;

async function sha256Hex(file: Blob): Promise<string> {
  if (file.size > HASHED_UP_TO || !globalThis.crypto?.subtle) return "";
  const hash = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join("");
}

function filePath(path: string): string {
  return path.split("/").filter(Boolean).map(encodeURIComponent).join("/");
}

export interface Scope {
  zone?: string;
  workspace?: string;
}

export class Api {
  constructor(public token: string) {}

  async call<T>(method: string, path: string, query: Record<string, string | number | undefined> = {},
    body?: unknown): Promise<T> {
    const init: RequestInit = { method, headers: headers(this.token), cache: "no-store" };
    if (body !== undefined) {
      init.headers = headers(this.token, { "Content-Type": "application/json" });
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url(path, query), init);
    if (!response.ok) throw await failure(response);
    return (await response.json()) as T;
  }

  whoami(): Promise<WhoAmI> {
    return this.call("GET", "whoami");
  }

  list(kind: string, scope: Scope = {}): Promise<{ items: DoraObject[]; resourceVersion: number }> {
    return this.call("GET", `objects/${kind}`, { ...scope });
  }

  get(kind: string, name: string, scope: Scope = {}): Promise<DoraObject> {
    return this.call("GET", `objects/${kind}/${encodeURIComponent(name)}`, { ...scope });
  }

  remove(kind: string, name: string, scope: Scope = {}): Promise<DoraObject> {
    return this.call("DELETE", `objects/${kind}/${encodeURIComponent(name)}`, { ...scope });
  }

  apply(yaml: string, scope: Scope = {}, dryRun = false): Promise<{ results: { object: DoraObject; result: string }[] }> {
    return this.call("POST", "apply", { ...scope }, { yaml, dryRun });
  }

  workloadVerb(name: string, verb: "scale" | "stop" | "start" | "rollback", scope: Scope,
    body: Record<string, number> = {}): Promise<unknown> {
    return this.call("POST", `workloads/${encodeURIComponent(name)}/${verb}`, { ...scope }, body);
  }

  versions(name: string, scope: Scope): Promise<{ current: number; items: DoraObject[] }> {
    return this.call("GET", `workloads/${encodeURIComponent(name)}/versions`, { ...scope });
  }

  scaleDownContainer(name: string, scope: Scope): Promise<DoraObject> {
    return this.call("POST", `containers/${encodeURIComponent(name)}/scale-down`, { ...scope });
  }

  cloneWorkspace(source: string, destination: string, zone: string): Promise<{ copied: string[] }> {
    return this.call("POST", "workspaces/clone", {}, { source, destination, zone });
  }

  // Pause or resume a workload's or a container's Docker containers (the Pausing service).
  setPaused(kind: "workloads" | "containers", name: string, paused: boolean, scope: Scope):
    Promise<{ object: DoraObject; containers: string[] }> {
    return this.call("POST", `${kind}/${encodeURIComponent(name)}/${paused ? "pause" : "resume"}`, { ...scope });
  }

  // The GPUs or CPUs of the zone's nodes and their product kinds (the Devices service).
  devices(kind: "GPU" | "CPU", scope: Scope): Promise<{ zone: string; products: string[] }> {
    return this.call("GET", `devices/${kind}`, { zone: scope.zone });
  }

  volumeLs(volume: string, path: string, scope: Scope): Promise<{ path: string; exists: boolean; files: VolumeFile[]; partialSize?: number }> {
    return this.call("GET", `volumes/${encodeURIComponent(volume)}/ls`, { ...scope, path });
  }

  // The file as the raw body (the browser sends its Content-Length), streamed on by dora-web.
  // Resumable: when the connection drops (fetch throws, no HTTP answer), ask `ls` of the
  // file how much arrived (partialSize) and send only the rest, with X-Upload-Offset and
  // the whole file's sha256 (the agent checks the joined file). A few tries, waiting
  // longer each time; an HTTP error is final.
  async upload(volume: string, path: string, file: Blob, scope: Scope): Promise<{ file: VolumeFile }> {
    const target = url(`volumes/${encodeURIComponent(volume)}/files/${filePath(path)}`, { ...scope });
    const digest = await sha256Hex(file);
    let offset = 0;
    for (let attempt = 1; ; attempt++) {
      const extra: Record<string, string> = { "Content-Type": "application/octet-stream" };
      if (digest) extra["X-Content-SHA256"] = digest;
      if (offset) extra["X-Upload-Offset"] = String(offset);
      let response: Response;
      try {
        response = await fetch(target, { method: "PUT", headers: headers(this.token, extra),
          body: file.slice(offset), cache: "no-store" });
      } catch (e) {
        if (attempt >= UPLOAD_TRIES) throw e;
        await new Promise((done) => setTimeout(done, 500 * attempt));
        const listed = await this.volumeLs(volume, path, scope).catch(() => null);
        const partial = listed?.partialSize ?? 0;
        offset = digest && partial > 0 && partial <= file.size ? partial : 0;
        continue;
      }
      if (!response.ok) throw await failure(response);
      return (await response.json()) as { file: VolumeFile };
    }
  }

  async download(volume: string, path: string, scope: Scope): Promise<Blob> {
    const response = await fetch(url(`volumes/${encodeURIComponent(volume)}/files/${filePath(path)}`, { ...scope }),
      { headers: headers(this.token), cache: "no-store" });
    if (!response.ok) throw await failure(response);
    return await response.blob();
  }

  taskJobs(name: string, scope: Scope): Promise<{ object: DoraObject; jobs: TaskJob[] }> {
    return this.call("GET", `tasks/${encodeURIComponent(name)}/jobs`, { ...scope });
  }

  taskVerb(name: string, verb: "kill" | "retry", scope: Scope): Promise<{ object: DoraObject; result: string }> {
    return this.call("POST", `tasks/${encodeURIComponent(name)}/${verb}`, { ...scope });
  }

  // A stream of Server-Sent Events: `onEvent` for each; ends when `signal` aborts.
  async stream(path: string, query: Record<string, string | number | undefined>,
    onEvent: (event: string, data: string, id: string | null) => void,
    signal: AbortSignal, lastEventId = ""): Promise<void> {
    const extra: Record<string, string> = { Accept: "text/event-stream" };
    if (lastEventId) extra["Last-Event-ID"] = lastEventId;
    const response = await fetch(url(path, query), { headers: headers(this.token, extra), signal, cache: "no-store" });
    if (!response.ok || !response.body) throw await failure(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "message";
    let data: string[] = [];
    let id: string | null = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline: number;
      while ((newline = buffer.search(/\r\n|\n|\r/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          if (data.length) onEvent(event, data.join("\n"), id);
          event = "message";
          data = [];
          id = null;
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const key = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (key === "event") event = val;
          else if (key === "data") data.push(val);
          else if (key === "id") id = val;
        }
      }
    }
  }
}

// A watch of one kind that keeps going: it resumes from the last event id after a
// dropped connection, and calls `onReset` (to list again) when told the version is
// too old. `stop()` ends it.
export class Watch {
  private controller = new AbortController();
  private lastId = "";
  stopped = false;

  constructor(
    private api: Api,
    private kind: string,
    private scope: Scope,
    private onChange: (type: string, obj: DoraObject) => void,
    private onReset: () => void,
    private onError: (message: string) => void,
  ) {}

  start(fromVersion: number): void {
    this.lastId = String(fromVersion);
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.controller.abort();
  }

  private async loop(): Promise<void> {
    let backoff = 250;
    while (!this.stopped) {
      let reset = false;
      try {
        await this.api.stream(`watch/${this.kind}`, { ...this.scope }, (event, data, id) => {
          if (id) this.lastId = id;
          backoff = 250;
          if (event === "added" || event === "modified" || event === "deleted") {
            this.onChange(event, (JSON.parse(data) as { object: DoraObject }).object);
          } else if (event === "reset") {
            reset = true;
          } else if (event === "error") {
            this.onError((JSON.parse(data) as { error: { message: string } }).error.message);
          }
        }, this.controller.signal, this.lastId);
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
          this.onError(e.message);
          return;
        }
      }
      if (this.stopped) return;
      if (reset) {
        this.stop();
        this.onReset();
        return;
      }
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}
