#!/usr/bin/env python3
"""Minimal RocketMQ remoting (TCP) client: frame = len(4) | (serType<<24|hdrLen)(4) | JSON header | body.

Usage:
  remoting.py HOST:PORT create-topic TOPIC [MESSAGE_TYPE] [QUEUES]
  remoting.py HOST:PORT create-group GROUP [fifo]
  remoting.py HOST:PORT raw CODE '{"extField":"value"}'
"""
import json
import socket
import struct
import sys

_opaque = [100]


def call(addr, code, ext_fields=None, body=b"", timeout=10.0):
    host, port = addr.rsplit(":", 1)
    _opaque[0] += 1
    header = {
        "code": code,
        "language": "JAVA",
        "version": 500,
        "opaque": _opaque[0],
        "flag": 0,
        "remark": None,
        "extFields": {k: str(v) for k, v in (ext_fields or {}).items()},
        "serializeTypeCurrentRPC": "JSON",
    }
    hb = json.dumps(header).encode()
    frame = struct.pack(">I", 4 + len(hb) + len(body)) + struct.pack(">I", len(hb)) + hb + body
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(frame)
        buf = b""
        while len(buf) < 4:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed before a response (got %r)" % buf)
            buf += chunk
        total = struct.unpack(">I", buf[:4])[0]
        while len(buf) < 4 + total:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("short response")
            buf += chunk
    hlen_raw = struct.unpack(">I", buf[4:8])[0]
    ser, hlen = hlen_raw >> 24, hlen_raw & 0xFFFFFF
    hdr = buf[8:8 + hlen]
    body = buf[8 + hlen:4 + total]
    if ser == 0:
        hdr = json.loads(hdr)
    return hdr, body


def create_topic(addr, topic, message_type=None, queues=8):
    ext = {
        "topic": topic,
        "defaultTopic": "TBW102",
        "readQueueNums": queues,
        "writeQueueNums": queues,
        "perm": 6,
        "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": 0,
        "order": "false",
    }
    if message_type:
        ext["attributes"] = "+message.type=%s" % message_type
    return call(addr, 17, ext)


def create_group(addr, group, fifo=False):
    body = {
        "groupName": group,
        "consumeEnable": True,
        "consumeFromMinEnable": True,
        "consumeBroadcastEnable": True,
        "consumeMessageOrderly": fifo,
        "retryQueueNums": 1,
        "retryMaxTimes": 16,
        "brokerId": 0,
        "whichBrokerWhenConsumeSlowly": 1,
        "notifyConsumerIdsChangedEnable": True,
        "groupSysFlag": 0,
        "consumeTimeoutMinute": 15,
        "attributes": {},
    }
    return call(addr, 200, {}, json.dumps(body).encode())


if __name__ == "__main__":
    addr, cmd = sys.argv[1], sys.argv[2]
    if cmd == "create-topic":
        mt = sys.argv[4] if len(sys.argv) > 4 else None
        q = int(sys.argv[5]) if len(sys.argv) > 5 else 8
        print(create_topic(addr, sys.argv[3], mt, q))
    elif cmd == "create-group":
        print(create_group(addr, sys.argv[3], len(sys.argv) > 4 and sys.argv[4] == "fifo"))
    elif cmd == "raw":
        print(call(addr, int(sys.argv[3]), json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}))
    else:
        sys.exit(__doc__)
