//go:build !unix

package sqlite

// canWrite and canRead cannot tell here without opening the file, which
// would drop SQLite's locks; SQLite's own error says it instead.
func canWrite(path string) error { return nil }
func canRead(path string) error  { return nil }
