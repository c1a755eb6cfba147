#!/bin/sh
# What a device does at boot, in shell: ask the signer for the text answer (key=value lines), connect, publish.
# Needs curl and mosquitto_pub. SIGNER_URL=http://127.0.0.1:8080 MQTT_CA_FILE=ca.pem sh examples/device/boot.sh
set -eu
SIGNER_URL=${SIGNER_URL:-http://127.0.0.1:8080}
PRODUCT_KEY=${PRODUCT_KEY:-123}
DEVICE_KEY=${DEVICE_KEY:-test}

answer=$(curl -sS --fail-with-body -X POST "$SIGNER_URL/sign" -H 'Accept: text/plain' -H 'Content-Type: application/json' \
  ${SIGNER_TOKEN:+-H "Authorization: Bearer $SIGNER_TOKEN"} \
  -d "{\"productKey\":\"$PRODUCT_KEY\",\"deviceKey\":\"$DEVICE_KEY\"}") || { echo "POST /sign: $answer" >&2; exit 1; }

# One key=value per line; a value may itself hold '=', so only the first one splits.
while IFS= read -r line; do
  case $line in
    mqttClientId=*) client_id=${line#*=} ;;
    mqttUsername=*) username=${line#*=} ;;
    mqttPassword=*) password=${line#*=} ;;
    mqttHost=*) host=${line#*=} ;;
    mqttPort=*) port=${line#*=} ;;
    mqttTls=*) tls=${line#*=} ;;
  esac
done <<EOT
$answer
EOT

: "${host:?the signer has no MQTT_HOST configured: it did not say where to connect}"
# TLS with the broker's CA when given, else the system's; plain only when the signer says the port is plain.
set --
[ "$tls" = true ] && set -- --capath /etc/ssl/certs
[ "$tls" = true ] && [ -n "${MQTT_CA_FILE:-}" ] && set -- --cafile "$MQTT_CA_FILE"
topic="/sys/$PRODUCT_KEY/$DEVICE_KEY/thing/measurepoint/post"
# -P puts the password on the command line, visible to local users: fine on a single-purpose device.
mosquitto_pub -V mqttv311 -h "$host" -p "$port" "$@" \
  -i "$client_id" -u "$username" -P "$password" -q 1 -t "$topic" -m '{"params":{"temperature":21.5}}'
echo "published to $topic"
