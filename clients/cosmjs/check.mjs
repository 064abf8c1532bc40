// Acceptance check of a Basalt node's CometBFT JSON-RPC subset with a real CometBFT client
// library, @cosmjs/tendermint-rpc.
//
// Usage: node check.mjs <rpc-url> <tx-hex>
//   <rpc-url>  the node's RPC, e.g. http://127.0.0.1:26657
//   <tx-hex>   a signed Basalt transaction (canonical SignedTx bytes) in hex, not yet submitted
//
// Exits 0 only when every check passes; prints each check as it goes. CHECK_TIMEOUT_MS (default
// 120000) bounds each wait (a NewBlock event, the transaction's commit).

import { createHash } from "node:crypto";
import { connectComet, isComet38Client } from "@cosmjs/tendermint-rpc";

const [url, txHex] = process.argv.slice(2);
if (!url || !txHex) {
  console.error("usage: node check.mjs <rpc-url> <tx-hex>");
  process.exit(2);
}
const waitMs = Number(process.env.CHECK_TIMEOUT_MS ?? 120_000);

function check(condition, what, detail) {
  if (!condition) {
    throw new Error(`FAILED: ${what}${detail === undefined ? "" : `: ${detail}`}`);
  }
  console.log(`ok - ${what}`);
}

const hex = (bytes) => Buffer.from(bytes).toString("hex").toUpperCase();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The first event of an xstream stream, or a rejection after `ms`. */
function firstEvent(stream, ms, what) {
  return new Promise((resolve, reject) => {
    let subscription;
    const timer = setTimeout(() => {
      subscription?.unsubscribe();
      reject(new Error(`FAILED: no ${what} within ${ms} ms`));
    }, ms);
    subscription = stream.subscribe({
      next: (event) => {
        clearTimeout(timer);
        // Unsubscribing sends `unsubscribe` to the server; let that happen after this tick.
        setTimeout(() => subscription.unsubscribe(), 0);
        resolve(event);
      },
      error: (error) => {
        clearTimeout(timer);
        reject(new Error(`FAILED: ${what} stream failed: ${JSON.stringify(error)}`));
      },
      complete: () => {
        clearTimeout(timer);
        reject(new Error(`FAILED: ${what} stream ended`));
      },
    });
  });
}

async function main() {
  const tx = Uint8Array.from(Buffer.from(txHex, "hex"));
  check(tx.length > 0 && hex(tx) === txHex.toUpperCase(), "the transaction is hex");
  const expectedHash = createHash("sha256").update(tx).digest("hex").toUpperCase();

  // HTTP: version detection, status, blocks.
  const client = await connectComet(url);
  check(isComet38Client(client), "connectComet picked the CometBFT 0.38 client");
  const status = await client.status();
  check(status.nodeInfo.version.startsWith("0.38."), "status: node_info.version is 0.38.x", status.nodeInfo.version);
  const chainId = status.nodeInfo.network;
  check(chainId.length > 0, `status: network is the chain id (${chainId})`);
  check(status.syncInfo.latestBlockHeight >= 1, `status: latest height ${status.syncInfo.latestBlockHeight}`);
  check(status.syncInfo.latestBlockHash.length === 32, "status: latest block hash is 32 bytes");
  check(!Number.isNaN(status.syncInfo.latestBlockTime.getTime()), "status: latest block time parses");
  check(status.validatorInfo.pubkey?.algorithm === "ed25519", "status: validator key is ed25519");
  check(status.validatorInfo.address.length === 20, "status: validator address is 20 bytes");

  const latest = await client.block();
  check(latest.block.header.height >= status.syncInfo.latestBlockHeight, `block(): latest height ${latest.block.header.height}`);
  check(latest.block.header.chainId === chainId, "block(): header chain id");
  check(latest.blockId.hash.length === 32, "block(): block id hash is 32 bytes");
  check(latest.block.lastCommit !== null || latest.block.header.height === 1, "block(): last commit present");
  if (latest.block.lastCommit) {
    const signed = latest.block.lastCommit.signatures.filter((s) => s.blockIdFlag === 2);
    check(signed.length > 0 && signed.every((s) => s.signature?.length === 64), `block(): last commit has ${signed.length} signatures`);
  }
  const first = await client.block(1);
  check(first.block.header.height === 1, "block(1): height 1");
  check(first.block.lastCommit === null && first.block.header.lastBlockId === null, "block(1): no parent, no last commit");

  // Subscribe before broadcasting, so the NewBlock of the transaction's block is not missed.
  const wsClient = await connectComet(url.replace(/^http/, "ws"));
  check(isComet38Client(wsClient), "WebSocket: connectComet picked the CometBFT 0.38 client");
  const newBlock = firstEvent(wsClient.subscribeNewBlock(), waitMs, "NewBlock event");

  const broadcast = await client.broadcastTxSync({ tx });
  check(broadcast.code === 0, "broadcastTxSync: code 0", `code ${broadcast.code}, log ${broadcast.log}`);
  check(hex(broadcast.hash) === expectedHash, `broadcastTxSync: hash is sha256 of the bytes (${expectedHash})`, hex(broadcast.hash));

  const block = await newBlock;
  check(block.header.chainId === chainId && block.header.height >= 1, `subscribeNewBlock: NewBlock at height ${block.header.height}`);
  check(block.lastCommit !== null || block.header.height === 1, "subscribeNewBlock: the block decodes with its last commit");

  // The transaction, once committed.
  const deadline = Date.now() + waitMs;
  let found;
  while (!found) {
    try {
      found = await client.tx({ hash: Buffer.from(expectedHash, "hex") });
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`FAILED: tx not committed within ${waitMs} ms: ${error.message}`);
      await sleep(250);
    }
  }
  check(hex(found.hash) === expectedHash, `tx: found at height ${found.height}, index ${found.index}`);
  check(found.result.code === 0, "tx: result code 0", `code ${found.result.code}, log ${found.result.log}`);
  check(hex(found.tx) === hex(tx), "tx: bytes are the broadcast bytes");
  const including = await client.block(found.height);
  check(including.block.txs.some((candidate) => hex(candidate) === hex(tx)), `block(${found.height}): contains the transaction`);

  wsClient.disconnect();
  client.disconnect();
  console.log("all checks passed");
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error.message ?? error);
    process.exit(1);
  },
);
