// Reads JSON lines {id, qr, now_ms} on stdin; writes the official SDK's decode and verify verdict.
const path = require("path");
const sdkRoot = path.dirname(require.resolve("bakong-khqr/package.json"));
const { BakongKHQR } = require("bakong-khqr");
const decodeKHQRValidation = require(path.join(sdkRoot, "src/controller/decodeValidation.js"));
const crc16 = require(path.join(sdkRoot, "src/helper/crc16.js"));
const { version } = require("bakong-khqr/package.json");

function verdict(qr) {
  if (!/6304[0-9a-fA-F]{4}$/.test(qr)) return { valid: false, code: null, message: "no CRC field" };
  if (crc16(qr.slice(0, -4)) != qr.slice(-4).toUpperCase() || qr.length < 12)
    return { valid: false, code: 8, message: "KHQR provided is invalid" };
  try {
    decodeKHQRValidation(qr);
    return { valid: true, code: null, message: null };
  } catch (error) {
    const status = (error && error.status) || {};
    return { valid: false, code: status.errorCode ?? null, message: status.message ?? String(error) };
  }
}

const lines = require("fs").readFileSync(0, "utf8").split("\n").filter((l) => l.trim());
for (const line of lines) {
  const record = JSON.parse(line);
  const realNow = Date.now;
  Date.now = () => record.now_ms;
  try {
    const result = verdict(record.qr);
    const agrees = BakongKHQR.verify(record.qr).isValid === result.valid;
    if (!agrees) throw new Error(`verify and the replayed steps disagree on ${record.id}`);
    const decoded = BakongKHQR.decode(record.qr).data;
    console.log(JSON.stringify({ id: record.id, sdk: `bakong-khqr@${version}`, verify: result, decode: decoded }));
  } finally {
    Date.now = realNow;
  }
}
