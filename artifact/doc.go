// Package artifact is scatter's release format and the store that holds it.
//
// A release is a tree of files, directories and symlinks. Build reads it
// from a directory or a tarball, cuts every file into content-defined chunks
// (package chunker), names each chunk by the SHA-256 of its bytes, and stores
// the chunks the store lacks, zstd-compressed, appended to pack files. The
// Manifest lists the tree and the chunks of each file together with the
// release metadata (repo, version, parent, builder, message, time); the
// release ID is the SHA-256 of its canonical encoding, and the deploy key
// signs the release ID (envelope format 2), so the same tree with the same
// metadata always gets the same ID.
//
// Vocabulary:
//   - chunk: a piece of a file's content, 4–64 KiB, addressed by core.ChunkID;
//   - manifest body: the canonical bytes that are signed and hashed;
//   - envelope: the stored form, key + signature + compressed body (Signed);
//   - store: chunks and manifests on disk (Store), shared by all releases;
//   - materialize: write a release tree out of the store (Materialize).
//
// Untrusted input — tarballs, manifests from the network, chunk files on
// disk — is checked before use: paths stay inside the tree, symlinks resolve
// inside it, sizes are bounded, chunk bytes match their IDs. Every write is
// atomic (temp file and rename), so neither a crash nor a full disk leaves
// something that looks complete but is not.
package artifact
