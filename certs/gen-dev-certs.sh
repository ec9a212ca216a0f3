#!/usr/bin/env bash
# gen-dev-certs.sh - a development CA and a leaf certificate for weir (ECDSA P-256).
#
#   certs/gen-dev-certs.sh [DIR]     default DIR: the directory of this script (certs/)
#   FORCE=1 certs/gen-dev-certs.sh   throw away and regenerate everything
#
# Writes into DIR:
#   ca.pem        the development CA certificate (trust it in a test client, never system-wide)
#   ca-key.pem    its private key (PKCS#8), kept so that the leaf can be re-issued by the same CA
#   site.pem      leaf certificate followed by the CA certificate (the chain weir serves)
#   site-key.pem  the leaf's private key (PKCS#8)
# The leaf is valid for localhost, 127.0.0.1, ::1, app.example.com and *.example.com.
#
# Idempotent: files that exist, match each other and stay valid for another day are kept;
# anything missing, mismatched or expiring is regenerated. Nothing here is ever trusted by
# anything but a developer's own test client: never ship these files.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$script_dir}
force=${FORCE:-0}

command -v openssl >/dev/null || { echo "gen-dev-certs: openssl not found (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

ca=$out/ca.pem
ca_key=$out/ca-key.pem
leaf=$out/site.pem
leaf_key=$out/site-key.pem
sans="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:app.example.com,DNS:*.example.com"
one_day=86400

work=$(mktemp -d "$out/.gen-dev-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 077   # private keys are created 0600; certificates are chmod'ed 0644 below

pubkey_of() {   # cert-or-key file -> public key in PEM (to check that a key matches a cert)
    case $2 in
        cert) openssl x509 -in "$1" -noout -pubkey 2>/dev/null ;;
        key)  openssl pkey -in "$1" -pubout 2>/dev/null ;;
    esac
}

valid_pair() {  # cert key -> true when both exist, match, and the cert stays valid for a day
    [[ -s $1 && -s $2 ]] || return 1
    openssl x509 -in "$1" -noout -checkend "$one_day" >/dev/null 2>&1 || return 1
    [[ "$(pubkey_of "$1" cert)" == "$(pubkey_of "$2" key)" ]]
}

new_key() {     # -> PKCS#8 ECDSA P-256 private key
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt ec_param_enc:named_curve -out "$1" 2>/dev/null
}

serial() { echo "0x$(openssl rand -hex 16)"; }

cat > "$work/ext.cnf" <<CNF
[ v3_leaf ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = $sans
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid, issuer
CNF

wrote=()

# --- the CA ------------------------------------------------------------------
if [[ $force != 1 ]] && valid_pair "$ca" "$ca_key"; then
    ca_fresh=0
else
    new_key "$work/ca-key.pem"
    openssl req -new -x509 -sha256 -days 3650 -key "$work/ca-key.pem" \
        -subj "/O=weir development/CN=weir development CA (untrusted)" \
        -set_serial "$(serial)" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$work/ca.pem"
    chmod 644 "$work/ca.pem"
    mv -f "$work/ca-key.pem" "$ca_key"
    mv -f "$work/ca.pem" "$ca"
    wrote+=("$ca" "$ca_key")
    ca_fresh=1
fi

# --- the leaf ----------------------------------------------------------------
leaf_ok() {     # the leaf is kept only if it was issued by this CA and covers every SAN
    (( ca_fresh == 0 )) || return 1
    valid_pair "$leaf" "$leaf_key" || return 1
    openssl verify -CAfile "$ca" "$leaf" >/dev/null 2>&1 || return 1
    local have
    have=$(openssl x509 -in "$leaf" -noout -ext subjectAltName 2>/dev/null | tr -d ' \n')
    [[ $have == "X509v3SubjectAlternativeName:DNS:localhost,IPAddress:127.0.0.1,IPAddress:0:0:0:0:0:0:0:1,DNS:app.example.com,DNS:*.example.com" ]]
}

if [[ $force != 1 ]] && leaf_ok; then
    :
else
    new_key "$work/site-key.pem"
    openssl req -new -sha256 -key "$work/site-key.pem" -subj "/O=weir development/CN=localhost" \
        -out "$work/site.csr"
    openssl x509 -req -sha256 -days 825 -in "$work/site.csr" \
        -CA "$ca" -CAkey "$ca_key" -set_serial "$(serial)" \
        -extfile "$work/ext.cnf" -extensions v3_leaf \
        -out "$work/leaf.pem" 2>/dev/null
    cat "$work/leaf.pem" "$ca" > "$work/site.pem"
    chmod 644 "$work/site.pem"
    mv -f "$work/site-key.pem" "$leaf_key"
    mv -f "$work/site.pem" "$leaf"
    wrote+=("$leaf" "$leaf_key")
fi

if (( ${#wrote[@]} == 0 )); then
    echo "gen-dev-certs: up to date in $out (ca.pem, ca-key.pem, site.pem, site-key.pem); FORCE=1 regenerates"
else
    for f in "${wrote[@]}"; do echo "wrote $f"; done
    echo "leaf SANs: ${sans//,/, }  (development only: trust $ca in test clients, never system-wide)"
fi
