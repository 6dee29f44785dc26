#!/usr/bin/env python3
"""dbc_decode.py — decodes frames with cantools, the reference canmc's --dbc is checked
against (tests/view_dbc.rs).

Usage: dbc_decode.py FILE.dbc FRAMES.txt
FRAMES.txt holds one frame a line in cansend syntax (123#DEADBEEF, 8-digit IDs are
extended). Prints, for each frame, one line per decoded signal:
    <frame index> <signal> <value repr> <label or ->
and `<index> - unknown` for a frame the DBC has no message for, `<index> - error <msg>`
when cantools refuses to decode it.
"""
import sys

import cantools


def main():
    db = cantools.database.load_file(sys.argv[1], strict=False)
    for i, line in enumerate(open(sys.argv[2])):
        ident, data = line.strip().split("#")
        ext = len(ident) == 8
        fid = int(ident, 16)
        data = bytes.fromhex(data)
        try:
            msg = db.get_message_by_frame_id(fid)
        except KeyError:
            print(i, "-", "unknown")
            continue
        if msg.is_extended_frame != ext:
            print(i, "-", "unknown")
            continue
        try:
            values = msg.decode(data, decode_choices=False)
            named = msg.decode(data, decode_choices=True)
        except Exception as e:  # cantools raises several kinds
            print(i, "-", "error", str(e).replace("\n", " "))
            continue
        for name, v in values.items():
            label = named[name]
            label = label.name if hasattr(label, "name") else "-"
            print(i, name, repr(float(v)) if isinstance(v, float) else repr(v), label.replace(" ", "_"))


if __name__ == "__main__":
    main()
