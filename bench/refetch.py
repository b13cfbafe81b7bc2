#!/usr/bin/env python3
"""The webhook run whose every event needs a re-fetch from Stripe (bench/run calls this).

Creates COUNT owners, each with a customer and a paid monthly subscription on the simulator
(standing in for Stripe) and a user in the service; switches the simulator's test-mode rate limit
on (25 operations a second, 429 past it) unless --no-limit; then posts one validly signed
`invoice.paid` per subscription, all at once (16 at a time). An invoice event does not carry the
subscription, so the service re-fetches each one from the simulator, through its own client-side
rate limit. Prints one JSON line: how many were accepted, the errors, and how long sending took.
bench/run then waits until every event is applied and reports the drain time.
"""

import argparse
import base64
import concurrent.futures
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request


def call(url, data=None, key=None, body=None, headers=None):
    request = urllib.request.Request(url, method="POST" if (data is not None or body is not None) else "GET")
    if key:
        token = base64.b64encode(f"{key}:".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if data is not None:
        payload = urllib.parse.urlencode(data).encode()
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    else:
        payload = body
    try:
        with urllib.request.urlopen(request, payload, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sim", required=True)
    p.add_argument("--svc", required=True)
    p.add_argument("--key", default="sk_test_bench")
    p.add_argument("--secret", required=True)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--run", required=True)
    p.add_argument("--no-limit", action="store_true")
    a = p.parse_args()

    def owner(i):
        user = f"rl{a.run}x{i}"
        status, _ = call(f"{a.svc}/dev/create_user?user_id={user}&email={user}@bench.example", data={})
        if status not in (200, 201):
            raise SystemExit(f"create_user {user}: {status}")
        status, body = call(f"{a.sim}/v1/customers", key=a.key, data={
            "email": f"{user}@bench.example", "metadata[user_id]": user, "payment_method": "pm_card_visa"})
        customer = json.loads(body)["id"]
        status, body = call(f"{a.sim}/v1/subscriptions", key=a.key, data={
            "customer": customer, "items[0][price]": "price_msr_monthly", "metadata[user_id]": user})
        sub = json.loads(body)
        if status != 200 or sub.get("status") != "active":
            raise SystemExit(f"subscription for {user}: {status} {body[:200]!r}")
        return customer, sub["id"], sub.get("latest_invoice") or f"in_{a.run}_{i}"

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        owners = list(pool.map(owner, range(a.count)))
    if not a.no_limit:
        call(f"{a.sim}/_sim/faults", key=a.key, body=json.dumps({"kind": "rate_limit", "on": True}).encode(),
             headers={"Content-Type": "application/json"})

    def deliver(i):
        customer, sub, invoice = owners[i]
        event = {
            "id": f"evt_rl_{a.run}_{i}", "object": "event", "api_version": "2026-09-30.endive",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": "invoice.paid",
            "data": {"object": {"id": invoice, "object": "invoice", "customer": customer,
                                "status": "paid", "parent": {"type": "subscription_details",
                                "subscription_details": {"subscription": sub}}}},
        }
        body = json.dumps(event).encode()
        t = int(time.time())
        signature = hmac.new(a.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        status, _ = call(f"{a.svc}/billing/webhook", body=body, headers={
            "Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={signature}"})
        return status

    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(deliver, range(a.count)))
    sent = time.time() - started
    if not a.no_limit:
        call(f"{a.sim}/_sim/faults", key=a.key, body=json.dumps({"kind": "rate_limit", "on": False}).encode(),
             headers={"Content-Type": "application/json"})
    errors = sum(1 for c in codes if c != 200)
    print(json.dumps({"scenario": "webhook_refetch", "label": "webhook refetch" + (" (no limit)" if a.no_limit else " (rate limited)"),
                      "events": a.count, "accepted": a.count - errors, "errors": errors,
                      "send_s": round(sent, 3)}))


if __name__ == "__main__":
    main()
