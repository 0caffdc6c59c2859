// bench.mjs runs in ts-mls the operations that the mls package's Go benchmarks
// (mls/bench_test.go) measure, on cipher suite 1
// (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519), so that both implementations
// can be compared on the same machine:
//
//	CommitWithPath128    createCommit with an UpdatePath (no proposals) by the
//	                     member at leaf 0 of a 128-member group whose tree has no
//	                     blank parent node
//	ProcessCommit128     processMessage of that commit by the member at the last leaf
//	AddMember1000        createCommit adding one member to a 1,000-member group,
//	                     with its Welcome (GroupInfo carrying the ratchet tree)
//	Join10000            joinGroup from a Welcome into a 10,000-member group, the
//	                     ratchet tree given out of band (only with --join10000 or
//	                     TSMLS_BENCH_JOIN=1, as building the group is slow)
//	ProtectUnprotect1KB  createApplicationMessage of 1 KB by one member plus
//	                     processMessage of it by the other, in a 2-member group
//
// As in the Go benchmarks, handshake messages are PublicMessage, a Welcome's
// GroupInfo carries the ratchet_tree extension (except for Join10000), the same
// group state is reused for every commit (ts-mls states are immutable values,
// which plays the part of Go's ClearPendingCommit), and the processing member
// starts every iteration from the same state. Messages are passed as decoded
// objects, without a wire round trip, as the Go benchmarks pass *MLSMessage.
//
// The 128-member group is built more cheaply than the Go benchmark builds it,
// into a tree of the same shape (every parent node set by an UpdatePath, no
// unmerged leaves): see benchFullGroup; --go-order builds it in the Go order.
//
// Output: one JSON object per line on stdout,
//
//	{"measure": "...", "ns_per_op": N, "iterations": K, ...}
//
// where ns_per_op is the median of K timed iterations (extra fields: mean_ns,
// min_ns, group_size and, when relevant, note). Progress goes to stderr.
//
// Usage: node bench.mjs [--time SECONDS] [--only NAME[,NAME...]] [--join10000] [--go-order]
// Environment: TSMLS_BENCH_TIME (seconds per measure, default 3),
// TSMLS_BENCH_ADD_SIZE (default 1000), TSMLS_BENCH_BUILD_BUDGET (seconds allowed
// for building the 1,000-member group before falling back to 256, default 180),
// TSMLS_BENCH_JOIN=1 (also run Join10000).

import { performance } from "node:perf_hooks";
import { randomBytes } from "node:crypto";
import {
  acceptAll,
  createApplicationMessage,
  createCommit,
  createGroup,
  defaultLifetime,
  emptyPskIndex,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processMessage,
} from "ts-mls";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

function parseArgs(argv) {
  const opts = {
    time: Number(process.env.TSMLS_BENCH_TIME ?? 3),
    addSize: Number(process.env.TSMLS_BENCH_ADD_SIZE ?? 1000),
    buildBudget: Number(process.env.TSMLS_BENCH_BUILD_BUDGET ?? 180),
    join: process.env.TSMLS_BENCH_JOIN === "1",
    goOrder: false,
    only: undefined,
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--time") opts.time = Number(argv[++i]);
    else if (a === "--only") opts.only = new Set(argv[++i].split(","));
    else if (a === "--join10000") opts.join = true;
    else if (a === "--go-order") opts.goOrder = true;
    else {
      console.error(`usage: node bench.mjs [--time SECONDS] [--only NAME[,NAME...]] [--join10000] [--go-order]`);
      process.exit(2);
    }
  }
  if (!(opts.time > 0)) throw new Error("--time: want a positive number of seconds");
  return opts;
}

const opts = parseArgs(process.argv);
const impl = await getCiphersuiteImpl(getCiphersuiteFromName(SUITE));
const capabilities = {
  versions: ["mls10"],
  ciphersuites: [SUITE],
  extensions: [],
  proposals: [],
  credentials: ["basic"],
};

function log(msg) {
  console.error(`[bench.mjs ${(performance.now() / 1000).toFixed(1)}s] ${msg}`);
}

function hex(b) {
  return Buffer.from(b).toString("hex");
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// newMember makes a member's signature key and one KeyPackage.
async function newMember(name) {
  const sigKeys = await impl.signature.keygen();
  const credential = { credentialType: "basic", identity: new TextEncoder().encode(name) };
  const kp = await generateKeyPackageWithKey(credential, capabilities, defaultLifetime, [], sigKeys, impl);
  return { name, kp, state: undefined };
}

async function newMembers(n, prefix, deadline) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    ms.push(await newMember(`${prefix}${i}`));
    if (deadline !== undefined && performance.now() > deadline) return undefined;
  }
  return ms;
}

const addProposal = (m) => ({ proposalType: "add", add: { keyPackage: m.kp.publicPackage } });

async function commit(state, extraProposals = [], ratchetTreeExtension = true) {
  return createCommit({ state, cipherSuite: impl }, { wireAsPublicMessage: true, extraProposals, ratchetTreeExtension });
}

async function process_(state, message) {
  const res = await processMessage(message, state, emptyPskIndex, acceptAll, impl);
  return res;
}

async function join(m, welcome, tree) {
  return joinGroup(welcome, m.kp.publicPackage, m.kp.privatePackage, emptyPskIndex, impl, tree);
}

// newGroup creates a group of the given members at leaves 0..n-1 with one
// commit adding all but the first, and has the members at the leaves in
// joiners join from its Welcome.
async function newGroup(ms, joiners = []) {
  const groupId = new TextEncoder().encode("bench");
  ms[0].state = await createGroup(groupId, ms[0].kp.publicPackage, ms[0].kp.privatePackage, [], impl);
  if (ms.length === 1) return undefined;
  const res = await commit(ms[0].state, ms.slice(1).map(addProposal));
  ms[0].state = res.newState;
  for (const i of joiners) ms[i].state = await join(ms[i], res.welcome);
  return res;
}

const epochAuth = (s) => hex(s.keySchedule.epochAuthenticator);

function blankParents(tree) {
  let n = 0;
  for (let i = 1; i < tree.length; i += 2) if (tree[i] === undefined) n++;
  return n;
}

// measure runs op (after warmup untimed runs) until the time budget is spent,
// with at least minIters and at most maxIters timed iterations. setup, when
// given, runs untimed before each iteration and its result is passed to op.
async function measure(name, op, { setup, warmup = 3, minIters = 10, maxIters = 1e6, budget = opts.time, extra = {} } = {}) {
  for (let i = 0; i < warmup; i++) await op(setup ? await setup() : undefined);
  const times = [];
  const end = performance.now() + budget * 1000;
  while (times.length < maxIters && (times.length < minIters || performance.now() < end)) {
    const arg = setup ? await setup() : undefined;
    const t0 = process.hrtime.bigint();
    await op(arg);
    times.push(Number(process.hrtime.bigint() - t0));
  }
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  const out = {
    measure: name,
    ns_per_op: Math.round(median),
    iterations: times.length,
    mean_ns: Math.round(mean),
    min_ns: sorted[0],
    ...extra,
  };
  emit(out);
  log(`${name}: median ${(median / 1e6).toFixed(3)} ms over ${times.length} iterations`);
  return out;
}

const want = (name) => opts.only === undefined || opts.only.has(name);

// --- CommitWithPath128 and ProcessCommit128 -------------------------------------

// benchFullGroup builds a group of n members (n a power of two) whose tree has
// no blank parent node and no unmerged leaf, and returns the members; only
// those at leaf 0 and at the last leaf hold state at the end.
//
// By default the group grows as it is filled, in steps: the member at leaf 0
// creates it; at step k the member at leaf 2k commits adding leaves 2k+2 and
// 2k+3 (leaves 1..3 at step 0; none at the last step), the member at leaf 2k+2
// joins from the Welcome, and the member at leaf 2k commits again with a path
// and no proposal (ts-mls puts no path in an add-only commit). Every parent
// node is set by a path after every leaf under it was added, so the final tree
// has the same shape as the Go benchmark's (all adds first, then the members at
// even leaves commit with a path in turn): every parent node non-blank, no
// unmerged leaves, the even leaves' LeafNodes from commits and the odd ones'
// from KeyPackages. Since members join only shortly before they commit, each
// commit is processed by two or three members instead of up to 127.
//
// With goOrder, the group is built exactly in the Go benchmark's order instead;
// this is much slower.
//
// Either way, each commit is processed by every member whose state is read
// again: the member at leaf 0, the members at even leaves yet to commit, and
// the member at the last leaf, once they are in the group. The other members'
// states would never be read, so they are not kept.
async function benchFullGroup(n, goOrder) {
  const t0 = performance.now();
  const ms = await newMembers(n, "m");
  const last = n - 1;
  const steps = []; // [committer leaf, leaves to add]; an empty add list means a commit with a path
  if (goOrder) {
    steps.push([0, ms.map((_, j) => j).slice(1)]);
    for (let i = 0; i < n; i += 2) steps.push([i, []]);
  } else {
    for (let i = 0; i < n; i += 2) {
      const adds = i === 0 ? [1, 2, 3] : i + 3 < n ? [i + 2, i + 3] : [];
      if (adds.length > 0) steps.push([i, adds]);
      steps.push([i, []]);
    }
  }
  const needed = (j) => j === 0 || j === last || j % 2 === 0;
  const holders = new Set([0]); // members in the group whose state is kept
  let processed = 0;
  let joined = 0;
  await newGroup(ms.slice(0, 1));
  for (const [i, adds] of steps) {
    const res = await commit(ms[i].state, adds.map((j) => addProposal(ms[j])));
    const hasPath = res.commit.publicMessage.content.commit.path !== undefined;
    if (hasPath !== (adds.length === 0)) throw new Error(`commit by leaf ${i}: path ${hasPath} with ${adds.length} adds`);
    ms[i].state = res.newState;
    for (const j of holders) {
      if (j === i) continue;
      ms[j].state = (await process_(ms[j].state, res.commit)).newState;
      processed++;
    }
    for (const j of adds.filter(needed)) {
      ms[j].state = await join(ms[j], res.welcome);
      holders.add(j);
      joined++;
    }
    for (const j of holders) {
      if (epochAuth(ms[j].state) !== epochAuth(ms[i].state)) throw new Error(`leaf ${j} disagrees with committer ${i}`);
    }
    if (hasPath && i !== 0) {
      holders.delete(i); // its state is never read again
      ms[i].state = undefined;
    }
  }
  const tree = ms[0].state.ratchetTree;
  if (tree.length !== 2 * n - 1) throw new Error(`tree of ${tree.length} nodes, want ${2 * n - 1}`);
  if (blankParents(tree) !== 0) throw new Error(`${blankParents(tree)} blank parent nodes in the ${n}-member tree`);
  for (let i = 1; i < tree.length; i += 2) {
    if (tree[i].parent.unmergedLeaves.length !== 0) throw new Error(`parent node ${i} has unmerged leaves`);
  }
  if (ms[last].state === undefined || epochAuth(ms[last].state) !== epochAuth(ms[0].state)) throw new Error("last leaf out of step");
  log(
    `built full ${n}-member group${goOrder ? " in the Go order" : ""} (${steps.length} commits, ${joined} joins, ${processed} commits processed) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return ms;
}

if (want("CommitWithPath128") || want("ProcessCommit128")) {
  const ms = await benchFullGroup(128, opts.goOrder);
  const sender = ms[0].state;
  const receiver = ms[127].state;
  if (want("CommitWithPath128")) {
    await measure(
      "CommitWithPath128",
      async () => {
        const res = await commit(sender);
        if (res.commit.publicMessage.content.commit.path === undefined) throw new Error("commit without a path");
      },
      { extra: { group_size: 128 } },
    );
  }
  if (want("ProcessCommit128")) {
    const res = await commit(sender);
    const wantAuth = epochAuth(res.newState);
    let got;
    await measure(
      "ProcessCommit128",
      async () => {
        got = (await process_(receiver, res.commit)).newState;
      },
      { extra: { group_size: 128 } },
    );
    if (epochAuth(got) !== wantAuth) throw new Error("processing member reached a different epoch");
  }
}

// --- AddMember1000 -----------------------------------------------------------------

if (want("AddMember1000")) {
  let n = opts.addSize;
  let note;
  const t0 = performance.now();
  const deadline = t0 + opts.buildBudget * 1000;
  let ms = await newMembers(n, "a", deadline);
  let built = false;
  if (ms !== undefined) {
    await newGroup(ms);
    built = performance.now() <= deadline;
  }
  if (!built) {
    note = `building the ${n}-member group took more than ${opts.buildBudget} s; measured with 256 members`;
    log(note);
    n = 256;
    ms = await newMembers(n, "a");
    await newGroup(ms);
  }
  log(`built ${n}-member group in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const joiner = await newMember("joiner");
  const state = ms[0].state;
  await measure(
    "AddMember1000",
    async () => {
      const res = await commit(state, [addProposal(joiner)]);
      if (res.welcome === undefined) throw new Error("no Welcome");
    },
    { extra: { group_size: n, ...(note ? { note } : {}) } },
  );
}

// --- Join10000 ---------------------------------------------------------------------

if (!opts.join && want("Join10000")) {
  emit({
    measure: "Join10000",
    ns_per_op: null,
    iterations: 0,
    skipped: "building the 10,000-member group takes minutes in ts-mls; run with --join10000 or TSMLS_BENCH_JOIN=1",
  });
} else if (want("Join10000")) {
  const n = 9999;
  const t0 = performance.now();
  const ms = await newMembers(n, "j");
  log(`made ${n} KeyPackages in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // ts-mls's TLS vector encoder recurses once per element and overflows the
  // default stack on a 10,000-member ratchet tree, so the tree stays out of
  // every GroupInfo (it is handed to joinGroup as an object, as Go's benchmark
  // hands it over out of band), and the members are added 1,000 per commit to
  // keep the proposal vector short too; the tree is the same as with one commit
  // (add-only commits carry no path).
  await newGroup(ms.slice(0, 1));
  for (let i = 1; i < n; i += 1000) {
    ms[0].state = (await commit(ms[0].state, ms.slice(i, i + 1000).map(addProposal), false)).newState;
  }
  log(`built ${n}-member group in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const joiner = await newMember("joiner");
  const res = await commit(ms[0].state, [addProposal(joiner)], false);
  const tree = res.newState.ratchetTree;
  const wantAuth = epochAuth(res.newState);
  log(`added the joiner in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  let got;
  await measure(
    "Join10000",
    async () => {
      got = await join(joiner, res.welcome, tree);
    },
    { warmup: 1, minIters: 3, extra: { group_size: n + 1 } },
  );
  if (epochAuth(got) !== wantAuth) throw new Error("joiner reached a different epoch");
}

// --- ProtectUnprotect1KB -----------------------------------------------------------

if (want("ProtectUnprotect1KB")) {
  const ms = await newMembers(2, "p");
  await newGroup(ms, [1]);
  const msg = new Uint8Array(randomBytes(1024));
  let sender = ms[0].state;
  let receiver = ms[1].state;
  let last;
  await measure(
    "ProtectUnprotect1KB",
    async () => {
      const p = await createApplicationMessage(sender, msg, impl);
      sender = p.newState;
      const r = await process_(receiver, { version: "mls10", wireformat: "mls_private_message", privateMessage: p.privateMessage });
      receiver = r.newState;
      last = r;
    },
    { extra: { group_size: 2 } },
  );
  if (last.kind !== "applicationMessage" || Buffer.compare(Buffer.from(last.message), Buffer.from(msg)) !== 0) {
    throw new Error("application message did not round-trip");
  }
}
