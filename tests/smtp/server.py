"""A real SMTP server for the mail tests: aiosmtpd (PyPI) on 127.0.0.1, writing each message it
accepts to DIR/NNNN.json as {"mail_from", "rcpt_tos", "content"} (the message as received).

    python server.py --port PORT --dir DIR
"""

import argparse
import asyncio
import json
import os
import signal

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "content": envelope.content.decode("utf-8", "replace"),
        }
        tmp = os.path.join(self.folder, f".{self.count:04d}.json")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.folder, f"{self.count:04d}.json"))
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    handler = Keep(args.dir)
    handler.count = len([n for n in os.listdir(args.dir) if n.endswith(".json")])
    controller = Controller(handler, hostname="127.0.0.1", port=args.port)
    controller.start()
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
