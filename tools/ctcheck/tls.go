package main

import cttls "github.com/google/certificate-transparency-go/tls"

// ctTLSUnmarshal decodes a TLS-encoded structure with certificate-transparency-go's codec.
func ctTLSUnmarshal(b []byte, v any) ([]byte, error) {
	return cttls.Unmarshal(b, v)
}
