#!/usr/bin/env python3
# A hostile landing from the default set's first 8 chunks: every kind of bad record SPEC §2.1 names.
import os, random, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
shutil.rmtree(dst, ignore_errors=True); os.makedirs(dst)
rng = random.Random(11)
bad = [
    b"0,'C1\"23','5','M','28007','M348934600','28007','es_food',20.97,0",   # stray quote
    b"0,'C777','5','M','28007','M34\x01','28007','es_food',1.00,0",        # control char
    b"0,'C778','5','M','28007','M348934600','28007','es_food',abc,0",       # bad amount
    b"0,'C779','5','M','28007','M348934600'",                               # short row
    b"0,\"C780,'5','M','28007','M348934600','28007','es_food',2.00,0",      # unbalanced quote
    b"0,'C781','5','M','28007','M348934600','28007','es_food',-3.00,0",     # negative amount
    b"0,'C782','5','X','28007','M348934600','28007','es_food',3.00,0",      # odd gender
    b"0,'\xff\xfe','5','F','28007','M348934600','28007','es_food',3.00,0",  # not UTF-8
    b"",                                                                    # blank line
    b"0,\"C783\",\"5\",\"F\",\"28007\",\"M348934600\",\"28007\",\"es_food\",\"4.50\",0",  # quoted
]
for k in range(8):
    name = f"chunk-{k:06d}.csv"
    data = open(os.path.join(src, name), "rb").read()
    lines = data.split(b"\n")
    header, rows = lines[0], [l for l in lines[1:] if l]
    for b in bad:
        rows.insert(rng.randrange(len(rows)), b)
    term = [b"\n", b"\r\n", b"\r"][k % 3]
    body = term.join([header] + rows) + term
    open(os.path.join(dst, name), "wb").write(body)
open(os.path.join(dst, "_COMPLETE"), "w").write("8\n")
