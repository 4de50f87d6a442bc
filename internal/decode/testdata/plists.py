#!/usr/bin/env python3
"""Writes device.plist (XML) and device.bplist (binary): one property list, as
an iOS app or SDK might send it, written by Python's plistlib, an encoder
independent of phonehome's decoder. Run from this directory: python3 plists.py"""
import datetime
import json
import plistlib

doc = {
    "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
    "device": {"model": "iPhone14,2", "os": "iOS 17.1.2", "name": "Zo\u00eb\u2019s iPhone", "screen": [1170, 2532]},
    "location": {"lat": 52.5200066, "lng": 13.404954, "accuracy": 35.0},
    "apps": ["com.whatsapp.WhatsApp", "com.facebook.Facebook", "com.burbn.instagram"],
    "payload": json.dumps({"email": "zoe@example.com"}).encode(),
    "nested": plistlib.dumps({"account_id": "6120847731"}, fmt=plistlib.FMT_BINARY),
    "first_seen": datetime.datetime(2026, 11, 18, 9, 30, 0),
    "session": 1731916800123,
    "negative": -42,
    "big": 2**64 - 1,
    "opted_out": False,
    "limit_ad_tracking": True,
    "ref": plistlib.UID(7),
}
xml_doc = dict(doc)
del xml_doc["ref"]  # UIDs exist only in binary lists

with open("device.bplist", "wb") as f:
    plistlib.dump(doc, f, fmt=plistlib.FMT_BINARY, sort_keys=True)
with open("device.plist", "wb") as f:
    plistlib.dump(xml_doc, f, fmt=plistlib.FMT_XML, sort_keys=True)
