package redis

// InsertUnchecked runs the insert script without Insert's checks in Go, so
// tests can reach the script's own (e.g. an ID twice in one batch).
var InsertUnchecked = (*Adapter).insert

// InsertChunk is insertChunk, for tests that span several chunks.
const InsertChunk = insertChunk
