// selftest.mjs proves driver.mjs on its own: it starts one driver process per
// client and runs a whole group's life between them, passing only hex wire
// bytes from process to process, for ciphersuites 1, 2, 3 and 7. After every
// step the epoch authenticators of all members must agree.
//
// Usage: node selftest.mjs [suite ...]    (exit status 0 when all pass)

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";

const driverPath = path.join(path.dirname(fileURLToPath(import.meta.url)), "driver.mjs");
const hex = (s) => Buffer.from(s, "utf8").toString("hex");

// Driver is one driver.mjs process.
class Driver {
  constructor(label) {
    this.label = label;
    this.nextId = 1;
    this.waiting = new Map();
    this.proc = spawn(process.execPath, [driverPath], { stdio: ["pipe", "pipe", "inherit"] });
    this.exited = new Promise((resolve) => this.proc.on("exit", (code) => resolve(code)));
    this.proc.on("exit", (code) => {
      for (const { reject } of this.waiting.values()) reject(new Error(`${label}: driver exited (${code})`));
      this.waiting.clear();
    });
    createInterface({ input: this.proc.stdout }).on("line", (line) => {
      let res;
      try {
        res = JSON.parse(line);
      } catch {
        throw new Error(`${label}: driver wrote a non-JSON line to stdout: ${line}`);
      }
      const w = this.waiting.get(res.id);
      if (w === undefined) throw new Error(`${label}: response to unknown id ${res.id}`);
      this.waiting.delete(res.id);
      w.resolve(res);
    });
  }

  // raw sends a request and resolves to the response, ok or not.
  raw(op, fields = {}) {
    const id = this.nextId++;
    const p = new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.proc.stdin.write(JSON.stringify({ id, op, ...fields }) + "\n");
    return p;
  }

  async call(op, fields = {}) {
    const res = await this.raw(op, fields);
    if (!res.ok) throw new Error(`${this.label} ${op}: ${res.error}`);
    return res;
  }

  async quit() {
    await this.call("quit");
    const code = await this.exited;
    if (code !== 0) throw new Error(`${this.label}: driver exit status ${code}`);
  }
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

// agree checks that every (driver, client) pair is at the same epoch with
// the same epoch authenticator and sees the same roster.
async function agree(step, members, wantSize) {
  const states = await Promise.all(members.map(([d, c]) => d.call("state", { client: c })));
  const [first] = states;
  for (const [i, s] of states.entries()) {
    const who = members[i][1];
    check(s.active, `${step}: ${who} active`);
    check(s.epoch === first.epoch, `${step}: ${who} epoch ${s.epoch} == ${first.epoch}`);
    check(s.epochAuthenticator === first.epochAuthenticator, `${step}: ${who} epoch authenticator`);
    check(s.treeHash === first.treeHash, `${step}: ${who} tree hash`);
    check(JSON.stringify(s.members) === JSON.stringify(first.members), `${step}: ${who} roster`);
  }
  check(first.members.length === wantSize, `${step}: ${first.members.length} members, want ${wantSize}`);
  console.error(`  ${step}: epoch ${first.epoch}, ${first.members.length} members, authenticator ${first.epochAuthenticator.slice(0, 16)}…`);
  return first;
}

async function send(step, from, to, text) {
  const { message } = await from[0].call("protect", { client: from[1], data: hex(text) });
  for (const [d, c] of to) {
    const res = await d.call("process", { client: c, message });
    check(res.contentType === "application", `${step}: ${c} content type ${res.contentType}`);
    check(res.application === hex(text), `${step}: ${c} got the plaintext`);
  }
}

async function commitTo(step, res, receivers) {
  for (const [d, c] of receivers) {
    const got = await d.call("process", { client: c, message: res.commit });
    check(got.contentType === "commit", `${step}: ${c} content type ${got.contentType}`);
    check(got.epoch === res.epoch, `${step}: ${c} epoch ${got.epoch} == ${res.epoch}`);
  }
}

async function scenario(suite) {
  const A = new Driver(`alice/${suite}`);
  const B = new Driver(`bob/${suite}`);
  const C = new Driver(`carol/${suite}`);
  try {
    const alice = [A, "alice"];
    const bob = [B, "bob"];
    const carol = [C, "carol"];
    await A.call("newClient", { client: "alice", identity: hex("alice"), suite });
    await B.call("newClient", { client: "bob", identity: hex("bob"), suite });
    await C.call("newClient", { client: "carol", identity: hex("carol"), suite, grease: true });

    // Alice creates the group and adds Bob; the Welcome carries the tree.
    await A.call("createGroup", { client: "alice", groupId: hex(`selftest-${suite}`) });
    const kpBob = await B.call("keyPackage", { client: "bob" });
    const addBob = await A.call("add", { client: "alice", keyPackage: kpBob.keyPackage });
    check(addBob.ratchetTreeExtension === true, "welcome carries ratchet_tree");
    const joinedBob = await B.call("join", { client: "bob", welcome: addBob.welcome });
    check(joinedBob.myLeafIndex === 1, "bob at leaf 1");
    await agree("alice adds bob (private commit, tree in welcome)", [alice, bob], 2);

    await send("alice -> bob", alice, [bob], "hello bob");
    await send("bob -> alice", bob, [alice], "hello alice");

    // Bob adds Carol with a public commit; the tree travels out of band.
    const kpCarol = await C.call("keyPackage", { client: "carol" });
    const addCarol = await B.call("add", {
      client: "bob",
      keyPackage: kpCarol.keyPackage,
      wireFormat: "public",
      ratchetTreeExtension: false,
    });
    check(addCarol.ratchetTreeExtension === false, "welcome without ratchet_tree");
    await commitTo("bob adds carol", addCarol, [alice]);
    const noTree = await C.raw("join", { client: "carol", welcome: addCarol.welcome });
    check(!noTree.ok, "join without any ratchet tree fails");
    await C.call("join", { client: "carol", welcome: addCarol.welcome, ratchetTree: addCarol.ratchetTree });
    await agree("bob adds carol (public commit, tree out of band)", [alice, bob, carol], 3);
    await send("carol -> all", carol, [alice, bob], "hello both");

    // Every member commits an update with a path, in both wire formats.
    for (const [who, wireFormat] of [
      [alice, "public"],
      [bob, "private"],
      [carol, "private"],
      [carol, "public"],
    ]) {
      const res = await who[0].call("update", { client: who[1], wireFormat });
      const others = [alice, bob, carol].filter((m) => m !== who);
      await commitTo(`${who[1]} update`, res, others);
      await agree(`${who[1]} updates (${wireFormat})`, [alice, bob, carol], 3);
    }
    await send("bob -> all", bob, [alice, carol], "after updates");

    // Messages and exporters agree.
    const exports = await Promise.all(
      [alice, bob, carol].map(([d, c]) => d.call("export", { client: c, label: "selftest", context: "00", length: 32 })),
    );
    check(new Set(exports.map((e) => e.secret)).size === 1, "exporter secrets agree");

    // A message with a trailing byte is refused, and the driver carries on.
    const { message } = await A.call("protect", { client: "alice", data: hex("x") });
    const bad = await B.raw("process", { client: "bob", message: message + "00" });
    check(!bad.ok && /trailing/.test(bad.error), "trailing byte refused");

    // Carol removes Alice; Alice learns she is out.
    const rm = await C.call("remove", { client: "carol", leafIndex: 0, wireFormat: "private" });
    await commitTo("carol removes alice", rm, [bob]);
    const gone = await A.call("process", { client: "alice", message: rm.commit });
    check(gone.active === false, "alice is no longer active");
    const st = await agree("carol removes alice", [bob, carol], 2);
    check(!st.members.some((m) => m.identity === hex("alice")), "alice gone from roster");

    // The remaining two go on.
    const upd = await B.call("update", { client: "bob", wireFormat: "public" });
    await commitTo("bob update", upd, [carol]);
    await agree("bob updates after removal", [bob, carol], 2);
    await send("carol -> bob", carol, [bob], "just us");
  } finally {
    await Promise.allSettled([A.quit(), B.quit(), C.quit()]);
    for (const d of [A, B, C]) if (d.proc.exitCode === null) d.proc.kill();
  }
}

const suites = process.argv.length > 2 ? process.argv.slice(2).map(Number) : [1, 2, 3, 7];
let passed = 0;
let failed = 0;
for (const suite of suites) {
  console.error(`suite ${suite}:`);
  try {
    await scenario(suite);
    passed++;
    console.log(`ok   suite ${suite}`);
  } catch (e) {
    failed++;
    console.log(`FAIL suite ${suite}: ${e.message}`);
  }
}
console.log(`selftest: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
