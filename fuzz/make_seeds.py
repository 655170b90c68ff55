#!/usr/bin/env python3
"""Write the seed corpora (fuzz/seeds/<target>/) from the hostile-input catalog in
tests/core/hostile_catalog.rs, so fuzzing starts from every case the catalog names."""
import pathlib, re, struct

root = pathlib.Path(__file__).resolve().parent.parent
catalog = (root / "tests" / "core" / "hostile_catalog.rs").read_text()
seeds = root / "fuzz" / "seeds"

def write(target, name, data):
    d = seeds / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)

count = {}
for name, status, body in re.findall(r'(r\d+_\w+): (\d+), [^,]+, r#"(.*?)"# =>', catalog):
    # token_response input: status (LE, minus 100), content-type selector, body.
    data = struct.pack("<H", int(status) - 100) + b"\x00" + body.encode()
    write("token_response", name, data)
    count["token_response"] = count.get("token_response", 0) + 1
for name, url in re.findall(r'(q\d+_\w+): "((?:[^"\\]|\\.)*)", ', catalog):
    write("url_origin", name, url.encode().decode("unicode_escape").encode("utf-8", "surrogatepass"))
    count["url_origin"] = count.get("url_origin", 0) + 1
for name, body in re.findall(r'\(\s*"(m\d+_\w+)",\s*r#"(.*?)"#,', catalog, re.S):
    write("discovery_document", name, body.encode())
    count["discovery_document"] = count.get("discovery_document", 0) + 1
write("discovery_document", "valid", b'{"issuer":"https://login.example.com/t1","token_endpoint":"https://login.example.com/t1/token","token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_basic"],"token_endpoint_auth_signing_alg_values_supported":["ES256","RS256"]}')
for name, data in [("empty", b""), ("magic", b"TPC1"), ("zeros", bytes(64)), ("flip", b"\x01")]:
    write("cache_entry", name, data)
    count["cache_entry"] = count.get("cache_entry", 0) + 1
print(count)
