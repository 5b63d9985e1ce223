// The MediaNest backend's encrypt/decrypt, in Node, for the interop tests.
//
// Usage: node node_crypto.js encrypt|encrypt-legacy|decrypt
// Reads the secret from the ENCRYPTION_KEY environment variable and the input (plaintext, or
// stored value) from stdin as UTF-8; writes the result to stdout. Exit status 1 on failure.
"use strict";

const crypto = require("crypto");

const SCRYPT = { N: 16384, r: 8, p: 1 };

function deriveKey(secret, salt) {
  return crypto.scryptSync(secret, salt, 32, SCRYPT);
}

function seal(plaintext, key, iv) {
  const cipher = crypto.createCipheriv("aes-256-gcm", key, iv);
  let encrypted = cipher.update(plaintext, "utf8", "hex");
  encrypted += cipher.final("hex");
  return [encrypted, iv.toString("hex"), cipher.getAuthTag().toString("hex")];
}

function encrypt(plaintext, secret) {
  const salt = crypto.randomBytes(32);
  const iv = crypto.randomBytes(16);
  return [...seal(plaintext, deriveKey(secret, salt), iv), salt.toString("hex")].join(":");
}

function encryptLegacy(plaintext, secret) {
  return seal(plaintext, deriveKey(secret, "salt"), crypto.randomBytes(16)).join(":");
}

function decrypt(stored, secret) {
  const parts = stored.split(":");
  if (parts.length !== 3 && parts.length !== 4) {
    throw new Error("Invalid encrypted data format");
  }
  const [encrypted, ivHex, tagHex, saltHex] = parts;
  const salt = parts.length === 4 ? Buffer.from(saltHex, "hex") : "salt";
  const decipher = crypto.createDecipheriv(
    "aes-256-gcm",
    deriveKey(secret, salt),
    Buffer.from(ivHex, "hex"),
  );
  decipher.setAuthTag(Buffer.from(tagHex, "hex"));
  let decrypted = decipher.update(encrypted, "hex", "utf8");
  decrypted += decipher.final("utf8");
  return decrypted;
}

const commands = { encrypt, "encrypt-legacy": encryptLegacy, decrypt };
const command = commands[process.argv[2]];
const secret = process.env.ENCRYPTION_KEY;
if (!command || !secret) {
  process.stderr.write("usage: ENCRYPTION_KEY=... node node_crypto.js encrypt|encrypt-legacy|decrypt\n");
  process.exit(2);
}
const input = require("fs").readFileSync(0, "utf8");
try {
  process.stdout.write(command(input, secret));
} catch (error) {
  process.stderr.write(`${error.name}\n`);
  process.exit(1);
}
