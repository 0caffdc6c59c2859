// driver.mjs drives ts-mls (an independent RFC 9420 implementation) through a
// line-based JSON protocol, so that Go tests can run MLS interop scenarios in
// which only wire bytes cross the process boundary.
//
// Protocol: one JSON request per line on stdin,
//
//	{"id": N, "op": "...", ...}
//
// and exactly one JSON response per line on stdout, in request order,
//
//	{"id": N, "ok": true, ...}   or   {"id": N, "ok": false, "error": "..."}
//
// Binary values are lowercase or uppercase hex strings. Nothing else is ever
// written to stdout; diagnostics go to stderr. Every client holds at most one
// group. Operations:
//
//	newClient  {client, identity, suite, grease?, notBefore?, notAfter?}
//	           -> {suite, suiteName, signaturePublicKey}
//	keyPackage {client} -> {keyPackage, keyPackageRef}    MLSMessage(mls_key_package)
//	createGroup {client, groupId} -> state
//	add        {client, keyPackage | keyPackages[], wireFormat?, ratchetTreeExtension?}
//	           -> {commit, welcome, ratchetTree, ratchetTreeExtension, epoch}
//	remove     {client, leafIndex | leafIndices[], wireFormat?} -> {commit, epoch}
//	update     {client, wireFormat?} -> {commit, epoch}   empty commit with a path
//	commit     {client, keyPackages?[], leafIndices?[], wireFormat?, ratchetTreeExtension?}
//	           -> like add; any mix of adds and removes in one commit
//	join       {client, welcome, ratchetTree?} -> state
//	process    {client, message} -> {contentType, epoch, application?, active}
//	protect    {client, data, authenticatedData?} -> {message}   PrivateMessage
//	state      {client} -> {epoch, epochAuthenticator, myLeafIndex, members, ...}
//	export     {client, label, context, length} -> {secret}     MLS-Exporter
//	quit       -> {} and the process exits
//
// wireFormat is "private" (PrivateMessage, the default) or "public"
// (PublicMessage) and applies to the commit only; application messages are
// always PrivateMessage. A Welcome carries the ratchet_tree extension in its
// GroupInfo unless ratchetTreeExtension is false; the tree is also returned
// on its own as ratchetTree (a TLS-encoded optional<Node> ratchet_tree<V>).

import { createInterface } from "node:readline";
import {
  acceptAll,
  ciphersuites,
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultLifetime,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  mlsExporter,
  processMessage,
} from "ts-mls";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { decodeRatchetTree, encodeRatchetTree } from "ts-mls/ratchetTree.js";
import { greaseCapabilities, greaseExtensions } from "ts-mls/grease.js";
import { p256, p384, p521 } from "@noble/curves/nist.js";

// Keep stdout for protocol lines only, whatever a dependency might log.
console.log = console.error;
console.info = console.error;
console.debug = console.error;
console.warn = console.error;

const suiteNames = new Map(Object.entries(ciphersuites).map(([name, id]) => [id, name]));

// clients maps a client name to {name, impl, suiteId, credential, sigKeys,
// capabilities, lifetime, kpExtensions, pending: Map(refHex -> {publicPackage,
// privatePackage}), state}.
const clients = new Map();

class RequestError extends Error {}

function fromHex(value, field) {
  if (typeof value !== "string" || value.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(value)) {
    throw new RequestError(`${field}: want an even-length hex string`);
  }
  return new Uint8Array(Buffer.from(value, "hex"));
}

function toHex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

function need(req, field) {
  if (req[field] === undefined || req[field] === null) throw new RequestError(`missing field ${field}`);
  return req[field];
}

function getClient(req) {
  const name = need(req, "client");
  const c = clients.get(name);
  if (c === undefined) throw new RequestError(`unknown client ${JSON.stringify(name)}`);
  return c;
}

function getState(c) {
  if (c.state === undefined) throw new RequestError(`client ${JSON.stringify(c.name)} is in no group`);
  return c.state;
}

// decodeWhole decodes one MLSMessage and rejects trailing bytes.
function decodeWhole(bytes, field, wantWireformat) {
  const res = decodeMlsMessage(bytes, 0);
  if (res === undefined) throw new RequestError(`${field}: ts-mls could not decode the MLSMessage`);
  const [msg, end] = res;
  if (end !== bytes.length) throw new RequestError(`${field}: ${bytes.length - end} trailing bytes after MLSMessage`);
  if (wantWireformat !== undefined) {
    const want = Array.isArray(wantWireformat) ? wantWireformat : [wantWireformat];
    if (!want.includes(msg.wireformat)) throw new RequestError(`${field}: wire format ${msg.wireformat}, want ${want.join(" or ")}`);
  }
  return msg;
}

function wireAsPublic(req) {
  const wf = req.wireFormat ?? "private";
  if (wf === "public") return true;
  if (wf === "private") return false;
  throw new RequestError(`wireFormat ${JSON.stringify(wf)}: want "public" or "private"`);
}

function leafIndices(req) {
  const list = [];
  if (req.leafIndex !== undefined) list.push(req.leafIndex);
  if (Array.isArray(req.leafIndices)) list.push(...req.leafIndices);
  for (const i of list) {
    if (!Number.isInteger(i) || i < 0) throw new RequestError(`leaf index ${JSON.stringify(i)}: want a non-negative integer`);
  }
  return list;
}

function keyPackagesOf(req) {
  const list = [];
  if (req.keyPackage !== undefined) list.push(req.keyPackage);
  if (Array.isArray(req.keyPackages)) list.push(...req.keyPackages);
  return list.map((h, i) => decodeWhole(fromHex(h, `keyPackages[${i}]`), `keyPackages[${i}]`, "mls_key_package").keyPackage);
}

function describeState(c) {
  const s = getState(c);
  const members = [];
  s.ratchetTree.forEach((node, nodeIndex) => {
    if (nodeIndex % 2 !== 0 || node === undefined || node.nodeType !== "leaf") return;
    const cred = node.leaf.credential;
    members.push({
      leafIndex: nodeIndex / 2,
      credentialType: cred.credentialType,
      identity: cred.credentialType === "basic" ? toHex(cred.identity) : "",
      signaturePublicKey: toHex(node.leaf.signaturePublicKey),
    });
  });
  return {
    groupId: toHex(s.groupContext.groupId),
    epoch: Number(s.groupContext.epoch),
    epochAuthenticator: toHex(s.keySchedule.epochAuthenticator),
    myLeafIndex: s.privatePath.leafIndex,
    treeHash: toHex(s.groupContext.treeHash),
    confirmedTranscriptHash: toHex(s.groupContext.confirmedTranscriptHash),
    groupContextExtensions: s.groupContext.extensions.map((e) => ({
      extensionType: e.extensionType,
      extensionData: toHex(e.extensionData),
    })),
    active: s.groupActiveState.kind === "active",
    groupActiveState: s.groupActiveState.kind,
    members,
  };
}

async function doCommit(c, req, adds, removes) {
  const state = getState(c);
  const extraProposals = [
    ...removes.map((removed) => ({ proposalType: "remove", remove: { removed } })),
    ...adds.map((keyPackage) => ({ proposalType: "add", add: { keyPackage } })),
  ];
  const ratchetTreeExtension = req.ratchetTreeExtension ?? true;
  const res = await createCommit(
    { state, cipherSuite: c.impl },
    { wireAsPublicMessage: wireAsPublic(req), extraProposals, ratchetTreeExtension },
  );
  c.state = res.newState;
  const out = {
    commit: toHex(encodeMlsMessage(res.commit)),
    epoch: Number(res.newState.groupContext.epoch),
    epochAuthenticator: toHex(res.newState.keySchedule.epochAuthenticator),
  };
  if (res.welcome !== undefined) {
    out.welcome = toHex(encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: res.welcome }));
    out.ratchetTree = toHex(encodeRatchetTree(res.newState.ratchetTree));
    out.ratchetTreeExtension = ratchetTreeExtension;
  }
  return out;
}

const ops = {
  async newClient(req) {
    const name = need(req, "client");
    if (typeof name !== "string" || name === "") throw new RequestError("client: want a non-empty string");
    if (clients.has(name)) throw new RequestError(`client ${JSON.stringify(name)} exists`);
    const identity = fromHex(need(req, "identity"), "identity");
    const suiteId = need(req, "suite");
    const suiteName = suiteNames.get(suiteId);
    if (suiteName === undefined) throw new RequestError(`suite ${JSON.stringify(suiteId)}: not supported by ts-mls`);
    const impl = await getCiphersuiteImpl(getCiphersuiteFromName(suiteName));
    const sigKeys = await impl.signature.keygen();
    // ts-mls publishes compressed ECDSA points; RFC 9420 §5.1.1 requires uncompressed
    // ones, so give the signature key in the form the RFC and other implementations use.
    const ecdsa = { P256: p256, P384: p384, P521: p521 }[getCiphersuiteFromName(suiteName).signature];
    if (ecdsa !== undefined) sigKeys.publicKey = ecdsa.getPublicKey(sigKeys.signKey, false);
    const base = {
      versions: ["mls10"],
      ciphersuites: Object.keys(ciphersuites),
      extensions: [],
      proposals: [],
      credentials: ["basic", "x509"],
    };
    // grease: every GREASE value (RFC 9420 section 13.5) in the capabilities
    // and one GREASE KeyPackage extension, deterministically; ts-mls's own
    // defaultCapabilities() adds each value with probability 0.1.
    const grease = req.grease === true;
    const capabilities = grease ? greaseCapabilities({ probabilityPerGreaseValue: 1 }, base) : base;
    const kpExtensions = grease ? greaseExtensions({ probabilityPerGreaseValue: 1 }).slice(0, 1) : [];
    const lifetime = {
      notBefore: req.notBefore !== undefined ? BigInt(req.notBefore) : defaultLifetime.notBefore,
      notAfter: req.notAfter !== undefined ? BigInt(req.notAfter) : defaultLifetime.notAfter,
    };
    clients.set(name, {
      name,
      impl,
      suiteId,
      credential: { credentialType: "basic", identity },
      sigKeys,
      capabilities,
      lifetime,
      kpExtensions,
      pending: new Map(),
      state: undefined,
    });
    return { suite: suiteId, suiteName, signaturePublicKey: toHex(sigKeys.publicKey) };
  },

  async keyPackage(req) {
    const c = getClient(req);
    const kp = await generateKeyPackageWithKey(c.credential, c.capabilities, c.lifetime, c.kpExtensions, c.sigKeys, c.impl);
    const ref = toHex(await makeKeyPackageRef(kp.publicPackage, c.impl.hash));
    c.pending.set(ref, kp);
    const msg = encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: kp.publicPackage });
    return { keyPackage: toHex(msg), keyPackageRef: ref };
  },

  async createGroup(req) {
    const c = getClient(req);
    const groupId = fromHex(need(req, "groupId"), "groupId");
    const kp = await generateKeyPackageWithKey(c.credential, c.capabilities, c.lifetime, c.kpExtensions, c.sigKeys, c.impl);
    c.state = await createGroup(groupId, kp.publicPackage, kp.privatePackage, [], c.impl);
    return describeState(c);
  },

  async add(req) {
    const c = getClient(req);
    const adds = keyPackagesOf(req);
    if (adds.length === 0) throw new RequestError("missing field keyPackage");
    return doCommit(c, req, adds, []);
  },

  async remove(req) {
    const c = getClient(req);
    const removes = leafIndices(req);
    if (removes.length === 0) throw new RequestError("missing field leafIndex");
    return doCommit(c, req, [], removes);
  },

  async update(req) {
    return doCommit(getClient(req), req, [], []);
  },

  async commit(req) {
    return doCommit(getClient(req), req, keyPackagesOf(req), leafIndices(req));
  },

  async join(req) {
    const c = getClient(req);
    const welcome = decodeWhole(fromHex(need(req, "welcome"), "welcome"), "welcome", "mls_welcome").welcome;
    let tree;
    if (req.ratchetTree !== undefined && req.ratchetTree !== null && req.ratchetTree !== "") {
      const bytes = fromHex(req.ratchetTree, "ratchetTree");
      const res = decodeRatchetTree(bytes, 0);
      if (res === undefined) throw new RequestError("ratchetTree: ts-mls could not decode it");
      if (res[1] !== bytes.length) throw new RequestError(`ratchetTree: ${bytes.length - res[1]} trailing bytes`);
      tree = res[0];
    }
    let entry;
    let ref;
    for (const s of welcome.secrets) {
      const r = toHex(s.newMember);
      if (c.pending.has(r)) {
        entry = c.pending.get(r);
        ref = r;
        break;
      }
    }
    if (entry === undefined) throw new RequestError("welcome: addressed to none of this client's KeyPackages");
    c.state = await joinGroup(welcome, entry.publicPackage, entry.privatePackage, emptyPskIndex, c.impl, tree);
    c.pending.delete(ref);
    return describeState(c);
  },

  async process(req) {
    const c = getClient(req);
    const msg = decodeWhole(fromHex(need(req, "message"), "message"), "message", [
      "mls_private_message",
      "mls_public_message",
    ]);
    const contentType =
      msg.wireformat === "mls_private_message" ? msg.privateMessage.contentType : msg.publicMessage.content.contentType;
    const res = await processMessage(msg, getState(c), emptyPskIndex, acceptAll, c.impl);
    c.state = res.newState;
    const out = {
      contentType,
      wireFormat: msg.wireformat === "mls_private_message" ? "private" : "public",
      epoch: Number(res.newState.groupContext.epoch),
      active: res.newState.groupActiveState.kind === "active",
    };
    if (res.kind === "applicationMessage") out.application = toHex(res.message);
    else out.actionTaken = res.actionTaken;
    return out;
  },

  async protect(req) {
    const c = getClient(req);
    const data = fromHex(need(req, "data"), "data");
    const aad = req.authenticatedData !== undefined ? fromHex(req.authenticatedData, "authenticatedData") : undefined;
    const res = await createApplicationMessage(getState(c), data, c.impl, aad);
    c.state = res.newState;
    const msg = encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage: res.privateMessage });
    return { message: toHex(msg) };
  },

  async state(req) {
    return describeState(getClient(req));
  },

  async export(req) {
    const c = getClient(req);
    const label = need(req, "label");
    if (typeof label !== "string") throw new RequestError("label: want a string");
    const context = fromHex(req.context ?? "", "context");
    const length = need(req, "length");
    if (!Number.isInteger(length) || length < 0 || length > 0xffff) throw new RequestError("length: want 0..65535");
    const secret = await mlsExporter(getState(c).keySchedule.exporterSecret, label, context, length, c.impl);
    return { secret: toHex(secret) };
  },

  async quit() {
    return {};
  },
};

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    reply({ id: null, ok: false, error: `bad request line: ${e.message}` });
    return false;
  }
  const id = req?.id ?? null;
  const op = req?.op;
  if (typeof op !== "string" || !Object.hasOwn(ops, op)) {
    reply({ id, ok: false, error: `unknown op ${JSON.stringify(op)}` });
    return false;
  }
  try {
    const res = await ops[op](req);
    reply({ id, ok: true, ...res });
  } catch (e) {
    const kind = e instanceof RequestError ? "request" : (e?.constructor?.name ?? "Error");
    if (process.env.TSMLS_DRIVER_DEBUG) console.error(e);
    reply({ id, ok: false, error: `${op}: ${kind}: ${e?.message ?? String(e)}` });
  }
  return op === "quit";
}

// Requests are handled strictly one at a time, in order: every op reads and
// replaces a client's state.
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
let chain = Promise.resolve();
rl.on("line", (line) => {
  if (line.trim() === "") return;
  chain = chain.then(async () => {
    if (await handle(line)) {
      rl.close();
      process.stdout.end(() => process.exit(0));
    }
  });
});
rl.on("close", () => {
  chain.then(() => process.stdout.end());
});
