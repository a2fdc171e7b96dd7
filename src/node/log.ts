/**
 * The node's log: one line per event on standard output, as a JSON object (`time`, `level`,
 * `event`, then the event's fields: `conn` for the connection id, `peer`, `reason`, …) or as
 * `key=value` text. Level and format change on reload.
 *
 * @module
 */

/** Log levels, least severe first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Log line formats. */
export type LogFormat = "json" | "text";

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Writes one line (without its newline). */
export type LineWriter = (line: string) => void;

function textValue(value: unknown): string {
  const s = typeof value === "string" ? value : JSON.stringify(value);
  return /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s);
}

/** A structured log with a level and format that can change while it runs. */
export class NodeLog {
  #level: LogLevel;
  #format: LogFormat;
  readonly #write: LineWriter;
  readonly #now: () => Date;

  /**
   * Creates a log.
   *
   * @param options Level, format, where lines go (standard output by default) and the clock.
   */
  constructor(
    options: {
      level?: LogLevel;
      format?: LogFormat;
      write?: LineWriter;
      now?: () => Date;
    } = {},
  ) {
    this.#level = options.level ?? "info";
    this.#format = options.format ?? "json";
    this.#write = options.write ?? ((line) => console.log(line));
    this.#now = options.now ?? (() => new Date());
  }

  /** Changes the level and format (a reload). */
  configure(level: LogLevel, format: LogFormat): void {
    this.#level = level;
    this.#format = format;
  }

  /** Whether `level` is written. */
  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.#level];
  }

  /** Writes `event` with `fields` at `level`, if enabled. */
  write(
    level: LogLevel,
    event: string,
    fields: Record<string, unknown> = {},
  ): void {
    if (!this.enabled(level)) return;
    const time = this.#now().toISOString();
    if (this.#format === "json") {
      this.#write(JSON.stringify({ time, level, event, ...fields }));
      return;
    }
    const parts = [time, level.toUpperCase(), event];
    for (const [k, v] of Object.entries(fields)) {
      if (v !== undefined) parts.push(`${k}=${textValue(v)}`);
    }
    this.#write(parts.join(" "));
  }

  /** {@linkcode NodeLog.write} at `debug`. */
  debug(event: string, fields?: Record<string, unknown>): void {
    this.write("debug", event, fields);
  }

  /** {@linkcode NodeLog.write} at `info`. */
  info(event: string, fields?: Record<string, unknown>): void {
    this.write("info", event, fields);
  }

  /** {@linkcode NodeLog.write} at `warn`. */
  warn(event: string, fields?: Record<string, unknown>): void {
    this.write("warn", event, fields);
  }

  /** {@linkcode NodeLog.write} at `error`. */
  error(event: string, fields?: Record<string, unknown>): void {
    this.write("error", event, fields);
  }
}
