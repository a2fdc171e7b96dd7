import assert from "node:assert/strict";
import {
  CertificateAuthority,
  CertificateRotator,
  MemoryCaStore,
  type ProvisionedIdentity,
  type RotationClock,
} from "../src/trustchain/mod.ts";

/** A clock the test moves by hand; timers fire only when time is advanced past them. */
class ManualClock implements RotationClock {
  #now: number;
  #next = 1;
  timers = new Map<number, { at: number; fn: () => void }>();
  constructor(start: Date) {
    this.#now = start.getTime();
  }
  now(): Date {
    return new Date(this.#now);
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = this.#next++;
    this.timers.set(id, { at: this.#now + ms, fn });
    return id;
  }
  clearTimeout(id: number): void {
    this.timers.delete(id);
  }
  advanceTo(t: number): void {
    this.#now = t;
    for (const [id, timer] of [...this.timers]) {
      if (timer.at <= t) {
        this.timers.delete(id);
        timer.fn();
      }
    }
  }
}

const HOUR = 3_600_000;

Deno.test("the rotator renews at two thirds of the lifetime on an injected clock", async () => {
  const t0 = new Date("2026-03-01T00:00:00Z").getTime();
  const clock = new ManualClock(new Date(t0));
  const ca = await CertificateAuthority.open({
    name: "rot-ca",
    store: new MemoryCaStore(),
    now: () => clock.now(),
  });
  const emitted: ProvisionedIdentity[] = [];
  let renewed: (id: ProvisionedIdentity) => void = () => {};
  const rotator = new CertificateRotator({
    provision: () => ca.provision("my-app"),
    onRenew: (id) => {
      emitted.push(id);
      renewed(id);
    },
    clock,
  });
  try {
    const first = await rotator.start();
    assert.equal(emitted.length, 1);
    assert.equal(first.notBefore.getTime(), t0);
    assert.equal(rotator.renewsAt?.getTime(), t0 + 16 * HOUR);
    assert.deepEqual([...clock.timers.values()].map((t) => t.at), [
      t0 + 16 * HOUR,
    ]);

    clock.advanceTo(t0 + 16 * HOUR - 1000);
    assert.equal(emitted.length, 1, "renewed too early");

    const next = new Promise<ProvisionedIdentity>((
      resolve,
    ) => (renewed = resolve));
    clock.advanceTo(t0 + 16 * HOUR);
    const second = await next;
    assert.equal(rotator.renewals, 1);
    assert.equal(second.notBefore.getTime(), t0 + 16 * HOUR);
    assert.notEqual(second.serial, first.serial);
    assert.notEqual(second.key, first.key);
    assert.equal(rotator.current, second);
    assert.deepEqual([...clock.timers.values()].map((t) => t.at), [
      t0 + 32 * HOUR,
    ]);
  } finally {
    rotator.close();
  }
  assert.equal(clock.timers.size, 0, "close() left a timer");
  rotator.close(); // idempotent
});

Deno.test("a failed renewal is reported and retried", async () => {
  const t0 = Date.UTC(2026, 2, 1);
  const clock = new ManualClock(new Date(t0));
  const ca = await CertificateAuthority.open({
    name: "rot-ca",
    store: new MemoryCaStore(),
    now: () => clock.now(),
  });
  let fail = true;
  let reported: (e: unknown) => void = () => {};
  let renewed: (id: ProvisionedIdentity) => void = () => {};
  const first = await ca.provision("app", { lifetimeMs: 3 * HOUR });
  using rotator = new CertificateRotator({
    current: first,
    provision: () =>
      fail ? Promise.reject(new Error("CA unreachable")) : ca.provision("app"),
    onRenew: (id) => renewed(id),
    onError: (e) => reported(e),
    retryMs: 60_000,
    clock,
  });
  await rotator.start();
  const error = new Promise((resolve) => (reported = resolve));
  clock.advanceTo(t0 + 2 * HOUR);
  assert.match(String(await error), /CA unreachable/);
  assert.deepEqual([...clock.timers.values()].map((t) => t.at), [
    t0 + 2 * HOUR + 60_000,
  ]);
  fail = false;
  const next = new Promise<ProvisionedIdentity>((
    resolve,
  ) => (renewed = resolve));
  clock.advanceTo(t0 + 2 * HOUR + 60_000);
  assert.equal((await next).notBefore.getTime(), t0 + 2 * HOUR + 60_000);
});

Deno.test("closing a rotator on the real clock leaves no timer behind", async () => {
  const ca = await CertificateAuthority.open({
    name: "rot-ca",
    store: new MemoryCaStore(),
  });
  const rotator = new CertificateRotator({
    provision: () => ca.provision("app"),
    onRenew: () => {},
  });
  await rotator.start();
  rotator.close(); // Deno's sanitizer fails this test if the renewal timer survived.
  assert.throws(
    () =>
      new CertificateRotator({
        provision: () => ca.provision("x"),
        onRenew: () => {},
        renewAt: 1.5,
      }),
    RangeError,
  );
});
