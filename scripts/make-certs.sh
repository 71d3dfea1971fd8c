#!/usr/bin/env bash
# make-certs.sh - a private CA and gateway certificates for Sluice, with openssl.
# docs/certificates.md explains each step; the strongSwan interop test
# (tests/interop/strongswan.sh cert-openssl-p384) uses exactly this script.
#
# usage:
#   scripts/make-certs.sh ca   DIR [CA-NAME]              DIR/ca.key.pem, DIR/ca.cert.pem
#       ECDSA P-384, 10 years, basicConstraints CA, keyUsage keyCertSign+cRLSign
#   scripts/make-certs.sh cert DIR NAME [p256|p384|rsa3072] [IP ...]
#       DIR/NAME.key.pem (PKCS#8, mode 0600) and DIR/NAME.cert.pem signed by
#       DIR/ca.*: subject C=XX, O=Sluice, CN=NAME; subjectAltName DNS:NAME and
#       each IP; keyUsage digitalSignature; EKU serverAuth+clientAuth; 5 years.
#   scripts/make-certs.sh crl  DIR [NAME ...]              DIR/crl.pem revoking NAMEs
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,15p' "$0" >&2; exit 2; }
mkdir -p "$dir"; cd "$dir"
umask 077
O=${CERT_ORG:-Sluice}

case $cmd in
  ca)
    name=${3:-Sluice VPN CA}
    cat > ca.cnf <<EOT
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
C = XX
O = $O
CN = $name
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOT
    openssl req -x509 -new -config ca.cnf -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes 2>/dev/null \
      -keyout ca.key.pem -out ca.cert.pem -days 3650 -sha384
    chmod 644 ca.cert.pem
    # openssl ca's database, for CRLs
    : > index.txt; echo 01 > crlnumber
    echo "CA: $dir/ca.cert.pem ($(openssl x509 -in ca.cert.pem -noout -subject))"
    ;;
  cert)
    name=${3:?NAME}; alg=${4:-p256}; shift 4 2>/dev/null || shift $#
    case $alg in
      p256) openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key.pem" ;;
      p384) openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$name.key.pem" ;;
      rsa3072) openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$name.key.pem" ;;
      *) echo "make-certs.sh: key type p256, p384 or rsa3072" >&2; exit 2 ;;
    esac
    san="DNS:$name"; for ip in "$@"; do san="$san,IP:$ip"; done
    cat > "$name.ext" <<EOT
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOT
    openssl req -new -key "$name.key.pem" -subj "/C=XX/O=$O/CN=$name" -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.cert.pem -CAkey ca.key.pem -set_serial "0x$(openssl rand -hex 8)" \
      -days 1825 -sha384 -extfile "$name.ext" -out "$name.cert.pem" 2>/dev/null
    chmod 644 "$name.cert.pem"; rm -f "$name.csr"
    echo "certificate: $dir/$name.cert.pem ($(openssl x509 -in "$name.cert.pem" -noout -serial)), key: $dir/$name.key.pem"
    ;;
  crl)
    shift 2
    cat > crl.cnf <<EOT
[ca]
default_ca = ca
[ca]
database = index.txt
crlnumber = crlnumber
default_md = sha384
default_crl_days = 30
EOT
    for name in "$@"; do
      openssl ca -config crl.cnf -keyfile ca.key.pem -cert ca.cert.pem -revoke "$name.cert.pem" \
        -crl_reason keyCompromise 2>/dev/null
    done
    openssl ca -config crl.cnf -keyfile ca.key.pem -cert ca.cert.pem -gencrl -out crl.pem 2>/dev/null
    chmod 644 crl.pem
    echo "CRL: $dir/crl.pem, revoking: ${*:-nothing}"
    ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
