"""The one parser of MQTT URLs, for the `--sensor mqtt://` source and the `--mqtt` sink alike.

``mqtt://[user:password@]host[:port]/topic[?client_id=ID&ca=FILE&insecure=1&scores=1]`` (port 1883), or
``mqtts://`` for TLS (port 8883). A subscription (the source) may use the topic wildcards + and #; a
publication (the sink) may not, and defaults to the topic ``edgeanom``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qs, unquote, urlsplit

from edgeanom.errors import EdgeanomError

DEFAULT_TOPIC = "edgeanom"
QUERY_KEYS = frozenset({"scores", "client_id", "ca", "insecure"})
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    topic: str
    tls: bool
    username: Optional[str]
    password: Optional[str]
    client_id: Optional[str]
    ca: Optional[str]
    insecure: bool
    scores: bool


def parse_mqtt_url(url: str, flag: str = "--mqtt", subscribe: bool = False) -> MqttTarget:
    """Split an MQTT URL into connection settings; a bad URL raises EdgeanomError naming `flag` and the URL."""
    # '#' is a topic wildcard, not a fragment: escape it so urlsplit keeps it in the path
    parts = urlsplit(url.replace("#", "%23"))
    if parts.scheme not in ("mqtt", "mqtts"):
        raise EdgeanomError(f"{flag} {url}: expected mqtt://host[:port]/topic or mqtts://...")
    try:
        port = parts.port
    except ValueError:
        raise EdgeanomError(f"{flag} {url}: the port is not a number in 1-65535") from None
    if not parts.hostname:
        raise EdgeanomError(f"{flag} {url}: no broker host (expected mqtt://host[:port]/topic)")
    topic = unquote(parts.path).strip("/")
    if subscribe and not topic:
        raise EdgeanomError(f"{flag} {url}: no topic to subscribe to (expected mqtt://host[:port]/topic)")
    topic = topic or DEFAULT_TOPIC
    if "\0" in topic or (not subscribe and any(c in topic for c in "+#")):
        raise EdgeanomError(f"{flag} {url}: the topic must not contain the wildcards + or #")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - QUERY_KEYS)
    if unknown:
        raise EdgeanomError(
            f"{flag} {url}: unknown option {unknown[0]!r} (known: {', '.join(sorted(QUERY_KEYS))})"
        )
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        topic=topic,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        client_id=query.get("client_id") or None,
        ca=query.get("ca") or None,
        insecure=query.get("insecure", "0").lower() in _TRUE,
        scores=query.get("scores", "0").lower() in _TRUE,
    )


def connect_client(target: MqttTarget, client_id: Optional[str] = None) -> object:
    """A paho client (callback API v2) with the URL's credentials and TLS settings; not yet connected."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=target.client_id or client_id or ""
    )
    if target.username is not None:
        client.username_pw_set(target.username, target.password)
    if target.tls:
        client.tls_set(ca_certs=target.ca)
        if target.insecure:
            client.tls_insecure_set(True)
    return client
