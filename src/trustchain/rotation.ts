/**
 * Automatic renewal of a provisioned identity before it expires.
 *
 * @module
 */

import type { ProvisionedIdentity } from "./ca.ts";

/** The timer and clock a rotator uses; injectable so tests can drive time. */
export interface RotationClock {
  /** Current time. */
  now(): Date;
  /** Schedules `fn` after `ms`; returns a handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): number;
  /** Cancels a scheduled call. */
  clearTimeout(handle: number): void;
}

/** The real clock and timers. */
export const SYSTEM_CLOCK: RotationClock = {
  now: () => new Date(),
  setTimeout: (fn, ms) => setTimeout(fn, ms) as unknown as number,
  clearTimeout: (h) => clearTimeout(h),
};

/** Options for {@linkcode CertificateRotator}. */
export interface CertificateRotatorOptions {
  /** Gets a new identity, e.g. `() => ca.provision("my-app")`. */
  provision: () => Promise<ProvisionedIdentity>;
  /** Called with each new identity (including the first); hand `{ cert, key }` to the listener. */
  onRenew: (identity: ProvisionedIdentity) => void;
  /** Called when a renewal fails; the rotator retries. */
  onError?: (error: unknown) => void;
  /**
   * The identity in use now, if any; otherwise the rotator provisions one at `start()`.
   */
  current?: ProvisionedIdentity;
  /**
   * Fraction of the lifetime after which to renew.
   * @default {2 / 3}
   */
  renewAt?: number;
  /**
   * Delay before retrying a failed renewal.
   * @default {30_000}
   */
  retryMs?: number;
  /**
   * Clock and timers.
   * @default {SYSTEM_CLOCK}
   */
  clock?: RotationClock;
}

// setTimeout takes a signed 32-bit delay; longer waits are done in steps.
const MAX_DELAY = 2 ** 31 - 1;

/**
 * Renews a provisioned identity at a fraction (default two thirds) of its lifetime and emits each
 * new identity. Holds one timer at most; `close()` cancels it.
 *
 * @example Keeping a listener's certificate fresh
 * ```ts
 * import { CertificateAuthority, CertificateRotator, MemoryCaStore } from "./mod.ts";
 * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
 * using rotator = new CertificateRotator({
 *   provision: () => ca.provision("my-app"),
 *   onRenew: ({ cert, key }) => console.log(cert.length > 0 && key.length > 0),
 * });
 * await rotator.start(); // true
 * ```
 */
export class CertificateRotator implements Disposable {
  readonly #opts: CertificateRotatorOptions;
  readonly #clock: RotationClock;
  readonly #renewAt: number;
  #current: ProvisionedIdentity | undefined;
  #timer: number | undefined;
  #closed = false;
  #started = false;
  #renewals = 0;

  /**
   * Creates a rotator; nothing happens until {@linkcode CertificateRotator.start}.
   *
   * @param opts What to provision, where to send it, and when.
   */
  constructor(opts: CertificateRotatorOptions) {
    if (
      typeof opts?.provision !== "function" ||
      typeof opts?.onRenew !== "function"
    ) {
      throw new TypeError(
        "Cannot create rotator as 'provision' and 'onRenew' must be functions",
      );
    }
    const renewAt = opts.renewAt ?? 2 / 3;
    if (!(renewAt > 0 && renewAt < 1)) {
      throw new RangeError(
        `Cannot create rotator as 'renewAt' must be in (0, 1): current value is ${renewAt}`,
      );
    }
    this.#opts = opts;
    this.#renewAt = renewAt;
    this.#clock = opts.clock ?? SYSTEM_CLOCK;
    this.#current = opts.current;
  }

  /** The identity in use. */
  get current(): ProvisionedIdentity | undefined {
    return this.#current;
  }

  /** How many renewals have completed (not counting the first provisioning). */
  get renewals(): number {
    return this.#renewals;
  }

  /** When the current identity will be renewed. */
  get renewsAt(): Date | undefined {
    const c = this.#current;
    if (!c) return undefined;
    const start = c.notBefore.getTime();
    return new Date(start + (c.notAfter.getTime() - start) * this.#renewAt);
  }

  /**
   * Provisions the first identity when none was given, emits it, and schedules renewal.
   *
   * @returns The identity in use.
   */
  async start(): Promise<ProvisionedIdentity> {
    if (this.#closed) throw new TypeError("Cannot start rotator: it is closed");
    this.#started = true;
    if (!this.#current) {
      this.#current = await this.#opts.provision();
      if (this.#closed) return this.#current;
      this.#opts.onRenew(this.#current);
    }
    this.#schedule();
    return this.#current;
  }

  #schedule(): void {
    if (this.#closed) return;
    const due = this.renewsAt!.getTime() - this.#clock.now().getTime();
    this.#arm(due, () => this.#renew());
  }

  #arm(delay: number, fn: () => void): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    const step = Math.min(Math.max(0, delay), MAX_DELAY);
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed) return;
      // A clamped wait, or a clock that has not yet reached the due time: check again.
      if (delay > step) this.#schedule();
      else fn();
    }, step);
  }

  async #renew(): Promise<void> {
    if (this.renewsAt!.getTime() > this.#clock.now().getTime()) {
      return this.#schedule();
    }
    let next: ProvisionedIdentity;
    try {
      next = await this.#opts.provision();
    } catch (err) {
      if (this.#closed) return;
      this.#opts.onError?.(err);
      this.#arm(this.#opts.retryMs ?? 30_000, () => this.#renew());
      return;
    }
    if (this.#closed) return;
    this.#current = next;
    this.#renewals++;
    this.#opts.onRenew(next);
    this.#schedule();
  }

  /**
   * Renews now, whatever the schedule (e.g. after a key compromise or a federation change),
   * emits the new identity and, once started, schedules the next renewal from it.
   *
   * @returns The new identity.
   * @throws {TypeError} When the rotator is closed; whatever `provision` throws (the current
   * identity then stays and the schedule is unchanged).
   *
   * @example Forcing a renewal
   * ```ts
   * import { CertificateAuthority, CertificateRotator, MemoryCaStore } from "./mod.ts";
   * const ca = await CertificateAuthority.open({ name: "demo", store: new MemoryCaStore() });
   * using rotator = new CertificateRotator({ provision: () => ca.provision("my-app"), onRenew: () => {} });
   * const first = await rotator.start();
   * const next = await rotator.renewNow();
   * console.log(next.serial !== first.serial, rotator.renewals); // true 1
   * ```
   */
  async renewNow(): Promise<ProvisionedIdentity> {
    if (this.#closed) {
      throw new TypeError("Cannot renew: the rotator is closed");
    }
    const next = await this.#opts.provision();
    if (this.#closed) return next;
    this.#current = next;
    this.#renewals++;
    this.#opts.onRenew(next);
    if (this.#started) this.#schedule();
    return next;
  }

  /** Cancels the pending renewal; idempotent. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Same as {@linkcode CertificateRotator.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
