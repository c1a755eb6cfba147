#!/usr/bin/env python3
"""What a device does at boot, in Python with paho-mqtt: ask the signer, connect over TLS, publish one message.

SIGNER_URL=http://127.0.0.1:8080 MQTT_CA_FILE=ca.pem python3 examples/device/boot.py
"""
import json
import os
import sys
import threading
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt

signer = os.environ.get("SIGNER_URL", "http://127.0.0.1:8080")
product_key = os.environ.get("PRODUCT_KEY", "123")
device_key = os.environ.get("DEVICE_KEY", "test")
headers = {"content-type": "application/json"}
if os.environ.get("SIGNER_TOKEN"):
    headers["authorization"] = "Bearer " + os.environ["SIGNER_TOKEN"]

request = urllib.request.Request(signer + "/sign", method="POST", headers=headers,
                                 data=json.dumps({"productKey": product_key, "deviceKey": device_key}).encode())
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        creds = json.load(response)
except urllib.error.HTTPError as err:
    sys.exit("POST /sign: %s" % err.read().decode())
broker = creds["broker"]

# paho-mqtt 2 wants the callback API version first; 1.x (Debian 12) has no such argument.
options = {"client_id": creds["mqttClientId"], "protocol": mqtt.MQTTv311}
if hasattr(mqtt, "CallbackAPIVersion"):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **options)
else:
    client = mqtt.Client(**options)
client.username_pw_set(creds["mqttUsername"], creds["mqttPassword"])
if broker["tls"]:
    client.tls_set(ca_certs=os.environ.get("MQTT_CA_FILE"))

connack = {}
connected = threading.Event()


def on_connect(client, userdata, flags, reason_code, properties=None):
    connack["code"] = getattr(reason_code, "value", reason_code)
    connected.set()


client.on_connect = on_connect
client.connect(broker["host"], broker["port"], keepalive=60)
client.loop_start()
if not connected.wait(10) or connack["code"] != 0:
    client.loop_stop()
    sys.exit("CONNECT refused: CONNACK %s" % connack.get("code", "never came"))
topic = "/sys/%s/%s/thing/measurepoint/post" % (product_key, device_key)
client.publish(topic, json.dumps({"params": {"temperature": 21.5}}), qos=1).wait_for_publish(10)
client.disconnect()
client.loop_stop()
print("published to " + topic)
