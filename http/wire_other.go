//go:build !unix

package http

// canTry leaves w writing through the connection alone, always under the deadline.
func (w *wire) canTry() {}
