"""dkimpy as the other side of crates/auth/tests/dkim_interop.rs.

Reads one JSON request on stdin and writes one JSON answer on stdout; messages travel
base64-encoded, as they may hold 8-bit bytes and must keep every CR and LF.

  {"mode": "sign", "cases": [{"message", "key": "rsa"|"ed25519", "canon": "relaxed/simple",
                              "length": bool}, ...]}
    -> {"records": {"rsa": "v=DKIM1; k=rsa; p=...", "ed25519": "..."}, "signed": [...]}
    Fresh keys each run (RSA-2048 from openssl, Ed25519 from PyNaCl); each message signed by
    selector `rsa` or `ed25519` of example.com; the answer is the message with its
    DKIM-Signature field on top.

  {"mode": "verify", "message", "records": {"sel._domainkey.example.com": "v=DKIM1; ..."}}
    -> {"results": [true, false, ...]}: dkimpy's verdict on each DKIM-Signature, top first,
    with the given TXT records as its only DNS.
"""

import base64
import json
import subprocess
import sys

import dkim
import nacl.encoding
import nacl.signing


def rsa_key():
    pem = subprocess.run(
        ["openssl", "genrsa", "-traditional", "2048"], capture_output=True, check=True
    ).stdout
    der = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem, capture_output=True, check=True
    ).stdout
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def ed25519_key():
    key = nacl.signing.SigningKey.generate()
    private = key.encode(encoder=nacl.encoding.Base64Encoder)
    public = key.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()
    return private, "v=DKIM1; k=ed25519; p=" + public


ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}


def sign(request):
    keys = {"rsa": rsa_key(), "ed25519": ed25519_key()}
    signed = []
    for case in request["cases"]:
        message = base64.b64decode(case["message"])
        header, body = case["canon"].split("/")
        field = dkim.sign(
            message,
            case["key"].encode(),
            b"example.com",
            keys[case["key"]][0],
            canonicalize=(header.encode(), body.encode()),
            signature_algorithm=ALGORITHMS[case["key"]],
            length=case["length"],
        )
        signed.append(base64.b64encode(field + message).decode())
    return {"records": {name: record for name, (_, record) in keys.items()}, "signed": signed}


def verify(request):
    records = {
        name.lower().rstrip(".").encode(): value.encode()
        for name, value in request["records"].items()
    }

    def dns(name, timeout=5):
        return records.get(name.lower().rstrip(b"."))

    message = base64.b64decode(request["message"])
    checker = dkim.DKIM(message)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    results = []
    for index in range(count):
        try:
            results.append(bool(checker.verify(idx=index, dnsfunc=dns)))
        except dkim.DKIMException:
            results.append(False)
    return {"results": results}


def main():
    request = json.load(sys.stdin)
    answer = {"sign": sign, "verify": verify}[request["mode"]](request)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
