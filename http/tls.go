package http

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// CertReloader serves a certificate from a pair of PEM files, reloaded when they
// change (looked at, at most every recheck, at a handshake) or when Reload is called (on
// SIGHUP), so that a renewed certificate (ACME, cert-manager) is taken without a
// restart. A reload that fails keeps the certificate in use.
type CertReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time // of the files when cert was loaded: the later of the two
	checked time.Time // when the files were last looked at
}

// recheck is how often a handshake looks whether the files changed.
const recheck = 10 * time.Second

// NewCertReloader loads the certificate and key of certFile and keyFile.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	c := &CertReloader{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload loads the files again.
func (c *CertReloader) Reload() error {
	mod, err := c.mtime()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.mu.Lock()
	c.cert, c.modTime, c.checked = &cert, mod, time.Now()
	c.mu.Unlock()
	return nil
}

// mtime is the later modification time of the two files.
func (c *CertReloader) mtime() (time.Time, error) {
	var t time.Time
	for _, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return t, fmt.Errorf("tls: %w", err)
		}
		if fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t, nil
}

// GetCertificate is a tls.Config's GetCertificate.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	due := time.Since(c.checked) >= recheck
	if due {
		c.checked = time.Now()
	}
	cert, loaded := c.cert, c.modTime
	c.mu.Unlock()
	if due {
		if mod, err := c.mtime(); err == nil && mod.After(loaded) {
			if err := c.Reload(); err == nil {
				c.mu.Lock()
				cert = c.cert
				c.mu.Unlock()
			}
		}
	}
	return cert, nil
}

// Config is a tls.Config that serves the reloader's certificate.
func (c *CertReloader) Config() *tls.Config {
	return &tls.Config{GetCertificate: c.GetCertificate, MinVersion: tls.VersionTLS12}
}
