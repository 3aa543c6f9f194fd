package loader

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
)

// ParsePrivateKey parses the PEM private key of Snowflake key-pair
// authentication: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY"), or
// PKCS#8 encrypted with a passphrase ("ENCRYPTED PRIVATE KEY", PBES2 with
// PBKDF2 and AES-CBC or DES-EDE3-CBC, as `openssl pkcs8 -topk8 -v2 aes256`
// or `-v2 des3` writes it). Errors never include key material.
func ParsePrivateKey(pemBytes, passphrase []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("private key: no PEM block found")
	}
	der := block.Bytes
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, errors.New("private key: not a valid PKCS#1 RSA key")
		}
		return k, nil
	case "ENCRYPTED PRIVATE KEY":
		if len(passphrase) == 0 {
			return nil, errors.New("private key: it is encrypted; give its passphrase")
		}
		var err error
		if der, err = decryptPKCS8(der, passphrase); err != nil {
			return nil, err
		}
	case "PRIVATE KEY":
	default:
		return nil, fmt.Errorf("private key: PEM block %q is not a private key", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("private key: cannot decrypt it: wrong passphrase?")
		}
		return nil, errors.New("private key: not a valid PKCS#8 key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key: %T, but Snowflake key-pair authentication needs RSA", k)
	}
	return rk, nil
}

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
)

type encryptedPKCS8 struct {
	Algo struct {
		OID    asn1.ObjectIdentifier
		Params struct {
			KDF struct {
				OID    asn1.ObjectIdentifier
				Params struct {
					Salt       []byte
					Iterations int
					KeyLength  int `asn1:"optional"`
					PRF        struct {
						OID asn1.ObjectIdentifier
					} `asn1:"optional"`
				}
			}
			Cipher struct {
				OID asn1.ObjectIdentifier
				IV  []byte
			}
		}
	}
	Data []byte
}

// decryptPKCS8 decrypts an EncryptedPrivateKeyInfo (RFC 5958) protected
// by PBES2 (RFC 8018).
func decryptPKCS8(der, passphrase []byte) ([]byte, error) {
	var e encryptedPKCS8
	if _, err := asn1.Unmarshal(der, &e); err != nil {
		return nil, errors.New("private key: not a valid encrypted PKCS#8 key")
	}
	p := e.Algo.Params
	if !e.Algo.OID.Equal(oidPBES2) || !p.KDF.OID.Equal(oidPBKDF2) {
		return nil, errors.New("private key: only PBES2 with PBKDF2 encryption is supported (openssl pkcs8 -topk8 -v2 aes256)")
	}
	var prf func() hash.Hash
	switch oid := p.KDF.Params.PRF.OID; {
	case len(oid) == 0 || oid.Equal(oidHMACSHA1):
		prf = sha1.New
	case oid.Equal(oidHMACSHA256):
		prf = sha256.New
	case oid.Equal(oidHMACSHA512):
		prf = sha512.New
	default:
		return nil, fmt.Errorf("private key: PBKDF2 with PRF %s is not supported", oid)
	}
	var keyLen int
	var newCipher func([]byte) (cipher.Block, error)
	switch oid := p.Cipher.OID; {
	case oid.Equal(oidAES128CBC):
		keyLen, newCipher = 16, aes.NewCipher
	case oid.Equal(oidAES192CBC):
		keyLen, newCipher = 24, aes.NewCipher
	case oid.Equal(oidAES256CBC):
		keyLen, newCipher = 32, aes.NewCipher
	case oid.Equal(oidDESEDE3CBC):
		keyLen, newCipher = 24, des.NewTripleDESCipher
	default:
		return nil, fmt.Errorf("private key: cipher %s is not supported; use AES-CBC or DES-EDE3-CBC", oid)
	}
	key, err := pbkdf2.Key(prf, string(passphrase), p.KDF.Params.Salt, p.KDF.Params.Iterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	block, err := newCipher(key)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	bs := block.BlockSize()
	if len(p.Cipher.IV) != bs || len(e.Data) == 0 || len(e.Data)%bs != 0 {
		return nil, errors.New("private key: malformed encrypted data")
	}
	out := make([]byte, len(e.Data))
	cipher.NewCBCDecrypter(block, p.Cipher.IV).CryptBlocks(out, e.Data)
	// PKCS#7 padding; a wrong passphrase usually shows here.
	n := int(out[len(out)-1])
	if n == 0 || n > bs {
		return nil, errors.New("private key: cannot decrypt it: wrong passphrase?")
	}
	for _, b := range out[len(out)-n:] {
		if int(b) != n {
			return nil, errors.New("private key: cannot decrypt it: wrong passphrase?")
		}
	}
	return out[:len(out)-n], nil
}
