// Which board column a container belongs in, by its phase.
import type { DoraObject } from "./api";

export type Column = "toRun" | "creating" | "running" | "ended";

export const COLUMNS: { id: Column; title: string }[] = [
  { id: "toRun", title: "To run" },
  { id: "creating", title: "Creating" },
  { id: "running", title: "Running" },
  { id: "ended", title: "Ended" },
];

export function columnOf(container: DoraObject): Column {
  const phase: string = container.status?.phase ?? "";
  if (phase === "" || phase === "Pending" || phase === "Scheduled") return "toRun";
  if (phase === "Creating") return "creating";
  if (phase === "Running" || phase === "Paused") return "running";
  return "ended";
}

export function failed(container: DoraObject): boolean {
  const phase: string = container.status?.phase ?? "";
  return phase === "Failed" || phase === "Lost" || (phase === "Exited" && (container.status?.exitCode ?? 0) !== 0);
}

export function age(timestamp: string | undefined, now: number): string {
  if (!timestamp) return "";
  const seconds = Math.max(0, Math.floor((now - Date.parse(timestamp)) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

// What a workload asks for, e.g. "2 GPU (A100)" or "1 CPU, 500m".
export function resources(spec: DoraObject["spec"]): string {
  const gpu = spec?.selectors?.gpu;
  const cpu = spec?.selectors?.cpu;
  const products = (s: { product_name?: string[] | string }): string => {
    const names = ([] as string[]).concat(s.product_name ?? []);
    return names.length && !(names.length === 1 && names[0] === "All") ? ` (${names.join(", ")})` : "";
  };
  if (gpu?.count) return `${gpu.count} GPU${products(gpu)}`;
  if (cpu?.count || cpu?.millicores) {
    const parts = [];
    if (cpu.count) parts.push(`${cpu.count} CPU`);
    if (cpu.millicores) parts.push(`${cpu.millicores}m`);
    return parts.join(", ") + products(cpu);
  }
  return "";
}

// A plain deep copy (structuredClone refuses Vue's reactive proxies).
export function copy<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}
