"""A tamper-evident audit log: records, the hash chain, signed checkpoints, the
writer, the verifier, the index and queries.

Never imports `gateway`: the gateway builds records (a completion hook, the admin
routes) and hands them to a `Writer`; everything else here works on the files.

The on-disk format (the contract between the writer, the verifier and the index)
--------------------------------------------------------------------------------

A log directory holds one sub-directory per *stream*: one chain, written by one
writer (one worker process of one replica; `worker-0`, `worker-1`, or a replica's
name). Each stream is a sequence of *segment* files named by the sequence number of
their first record, zero-padded to 12 digits: `DIR/<stream>/000000000001.jsonl`.

Every line of a segment is one JSON object (UTF-8, no newline inside, `\\n` after),
of one of these kinds:

- a **record** (`"kind": "request" | "admin" | "tombstone"`), part of the chain:
  `seq` (1, 2, 3...: gapless over the whole stream) and `prev`, the lowercase hex
  SHA-256 of the previous record's line bytes (without its newline); the first
  record of a stream has `prev` = 64 zeros (or the head a tombstone names). The
  record's own hash is the SHA-256 of its line bytes as written: nobody needs to
  re-serialise anything to verify it. Fields: audit/record.py.
- a **checkpoint** (`"kind": "checkpoint"`), not part of the record chain: it
  signs the chain up to a record. Fields: `stream`, `first` and `last` (the
  sequence range it covers: the previous checkpoint's `last` + 1 to `last`),
  `head` (the hash of record `last`), `prev_checkpoint` (the SHA-256 of the
  previous checkpoint line's bytes, 64 zeros for the first), `time` (unix seconds),
  `key_id`, and `sig`: base64 Ed25519 signature over the canonical JSON (sorted
  keys, `,` and `:` separators, no whitespace) of every other field. A checkpoint
  closes every segment and is written at least every second while records flow.

`key_id` is the first 16 hex digits of the SHA-256 of the raw 32-byte public key.
"""
