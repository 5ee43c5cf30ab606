"""A schema-only `hashicorp/google` provider plugin for `terraform init` and `terraform validate`.

Terraform starts it as it starts any provider (https://github.com/hashicorp/go-plugin): it checks
the magic cookie, serves plugin protocol 6 over gRPC on 127.0.0.1 and prints the handshake line
`1|6|tcp|127.0.0.1:PORT|grpc|CERT` on stdout. Terraform turns on automatic mutual TLS: it passes its
client certificate in PLUGIN_CLIENT_CERT, and the plugin answers with a self-signed server certificate
for "localhost" (DER, unpadded base64, in the last field of the handshake) and requires that client
certificate on every connection.

It serves the schema recovered by `google_schema.py` (GetProviderSchema, GetMetadata) and accepts
every configuration (the Validate* calls return no diagnostics): what `terraform validate` checks
against the schema is Terraform's own work. Planning, applying or reading is not offered
(UNIMPLEMENTED). The go-plugin controller's Shutdown ends the process.

Usage (Terraform runs it): `python schema_provider.py SCHEMA_JSON`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
from concurrent import futures
from typing import Any

import grpc
from tfplugin_proto import tfplugin6_5_pb2 as pb
from tfplugin_proto import tfplugin6_5_pb2_grpc as pb_grpc

MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
CORE_PROTOCOL_VERSION = 1
APP_PROTOCOL_VERSION = 6

_NESTING = {
    "single": pb.Schema.NestedBlock.SINGLE,
    "group": pb.Schema.NestedBlock.GROUP,
    "list": pb.Schema.NestedBlock.LIST,
    "set": pb.Schema.NestedBlock.SET,
    "map": pb.Schema.NestedBlock.MAP,
}


def block_proto(block: dict[str, Any]) -> pb.Schema.Block:
    """A tfplugin6 schema block from the `providers schema -json` shape."""
    attributes = []
    for name, attr in sorted(block.get("attributes", {}).items()):
        required = bool(attr.get("required"))
        computed = bool(attr.get("computed"))
        # Terraform rejects an attribute that is neither required, optional nor computed.
        optional = bool(attr.get("optional")) or not (required or computed)
        attributes.append(
            pb.Schema.Attribute(
                name=name,
                type=json.dumps(attr["type"]).encode(),
                description=attr.get("description", ""),
                required=required,
                optional=optional and not required,
                computed=computed and not required,
                sensitive=bool(attr.get("sensitive")),
                deprecated=bool(attr.get("deprecated")),
            )
        )
    nested = []
    for name, blk in sorted(block.get("block_types", {}).items()):
        nested.append(
            pb.Schema.NestedBlock(
                type_name=name,
                block=block_proto(blk["block"]),
                nesting=_NESTING[blk["nesting_mode"]],
                min_items=blk.get("min_items", 0),
                max_items=blk.get("max_items", 0),
            )
        )
    return pb.Schema.Block(attributes=attributes, block_types=nested)


def schema_response(schema: dict[str, Any]) -> pb.GetProviderSchema.Response:
    def one(entry: dict[str, Any]) -> pb.Schema:
        return pb.Schema(version=entry.get("version", 0), block=block_proto(entry["block"]))

    return pb.GetProviderSchema.Response(
        provider=one(schema["provider"]),
        resource_schemas={name: one(s) for name, s in schema["resource_schemas"].items()},
        data_source_schemas={name: one(s) for name, s in schema["data_source_schemas"].items()},
        server_capabilities=pb.ServerCapabilities(plan_destroy=True),
    )


class SchemaProvider(pb_grpc.ProviderServicer):
    def __init__(self, schema: dict[str, Any], stopped: threading.Event) -> None:
        self._schema = schema
        self._response: pb.GetProviderSchema.Response | None = None
        self._lock = threading.Lock()
        self._stopped = stopped

    def GetMetadata(self, request: Any, context: Any) -> pb.GetMetadata.Response:
        return pb.GetMetadata.Response(
            server_capabilities=pb.ServerCapabilities(plan_destroy=True),
            resources=[pb.GetMetadata.ResourceMetadata(type_name=n) for n in self._schema["resource_schemas"]],
            data_sources=[pb.GetMetadata.DataSourceMetadata(type_name=n) for n in self._schema["data_source_schemas"]],
        )

    def GetProviderSchema(self, request: Any, context: Any) -> pb.GetProviderSchema.Response:
        with self._lock:
            if self._response is None:
                self._response = schema_response(self._schema)
            return self._response

    def ValidateProviderConfig(self, request: Any, context: Any) -> pb.ValidateProviderConfig.Response:
        return pb.ValidateProviderConfig.Response()

    def ValidateResourceConfig(self, request: Any, context: Any) -> pb.ValidateResourceConfig.Response:
        return pb.ValidateResourceConfig.Response()

    def ValidateDataResourceConfig(self, request: Any, context: Any) -> pb.ValidateDataResourceConfig.Response:
        return pb.ValidateDataResourceConfig.Response()

    def GetFunctions(self, request: Any, context: Any) -> pb.GetFunctions.Response:
        return pb.GetFunctions.Response()

    def StopProvider(self, request: Any, context: Any) -> pb.StopProvider.Response:
        return pb.StopProvider.Response()


def _go_plugin_services(stopped: threading.Event) -> list[grpc.GenericRpcHandler]:
    """go-plugin's own services. Their messages are tiny, so they are written by hand:
    `plugin.Empty` is zero bytes and a health answer of SERVING is field 1 = 1."""

    def shutdown(request: bytes, context: Any) -> bytes:
        stopped.set()
        return b""

    def stdio(request: bytes, context: Any) -> Any:
        stopped.wait()
        return iter(())

    def health(request: bytes, context: Any) -> bytes:
        return b"\x08\x01"

    raw = {"request_deserializer": lambda b: b, "response_serializer": lambda b: b}
    return [
        grpc.method_handlers_generic_handler(
            "plugin.GRPCController", {"Shutdown": grpc.unary_unary_rpc_method_handler(shutdown, **raw)}
        ),
        grpc.method_handlers_generic_handler(
            "plugin.GRPCStdio", {"StreamStdio": grpc.unary_stream_rpc_method_handler(stdio, **raw)}
        ),
        grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(health, **raw)}
        ),
    ]


def server_certificate() -> tuple[bytes, bytes, bytes]:
    """(key PEM, certificate PEM, certificate DER): self-signed, for "localhost", like go-plugin's own."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


class _TlsFront:
    """Mutual TLS on 127.0.0.1 (the client must present PLUGIN_CLIENT_CERT, ALPN h2), each
    connection relayed to the gRPC server's unix socket."""

    def __init__(self, key_pem: bytes, cert_pem: bytes, client_cert: str, socket_path: str, private: str) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(cadata=client_cert)
        self.context.set_alpn_protocols(["h2"])
        key_file = os.path.join(private, "server.pem")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
            handle.write(cert_pem + key_pem)
        self.context.load_cert_chain(key_file)
        os.unlink(key_file)
        self.socket_path = socket_path
        self.listener = socket.create_server(("127.0.0.1", 0))

    def start(self) -> int:
        threading.Thread(target=self._accept, daemon=True).start()
        return self.listener.getsockname()[1]

    def _accept(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            outer = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            print(f"TLS handshake refused: {exc}", file=sys.stderr)
            conn.close()
            return
        inner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        inner.connect(self.socket_path)
        done = threading.Event()

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            done.set()

        threading.Thread(target=pump, args=(inner, outer), daemon=True).start()
        pump(outer, inner)
        done.wait(5)
        for sock in (outer, inner):
            with contextlib.suppress(OSError):
                sock.close()


def serve(schema_path: str) -> int:
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        print(
            "This binary is a plugin. These are not meant to be executed directly.\n"
            "Please execute the program that consumes these plugins, which will\n"
            "load any plugins automatically",
            file=sys.stderr,
        )
        return 1
    offered = os.environ.get("PLUGIN_PROTOCOL_VERSIONS", str(APP_PROTOCOL_VERSION))
    if str(APP_PROTOCOL_VERSION) not in offered.split(","):
        print(f"plugin speaks protocol {APP_PROTOCOL_VERSION} only; offered: {offered}", file=sys.stderr)
        return 1
    # Terraform handles Ctrl-C itself and ends its plugins through the controller.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    with open(schema_path) as handle:
        schema = json.load(handle)
    stopped = threading.Event()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        handlers=_go_plugin_services(stopped),
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", 256 << 20)],
    )
    pb_grpc.add_ProviderServicer_to_server(SchemaProvider(schema, stopped), server)

    client_cert = os.environ.get("PLUGIN_CLIENT_CERT", "")
    cert_field = ""
    private = ""
    if client_cert:
        # gRPC's TLS (BoringSSL) does not accept the P-521 signatures of Terraform's client
        # certificate, so Terraform would send none; TLS ends in front of the gRPC server instead,
        # with Python's ssl module, and the gRPC server listens on a private unix socket.
        private = tempfile.mkdtemp(prefix="tfplugin-")
        socket_path = os.path.join(private, "grpc.sock")
        server.add_insecure_port(f"unix:{socket_path}")
        key_pem, cert_pem, cert_der = server_certificate()
        port = _TlsFront(key_pem, cert_pem, client_cert, socket_path, private).start()
        cert_field = base64.b64encode(cert_der).decode().rstrip("=")
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    line = f"{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|tcp|127.0.0.1:{port}|grpc"
    sys.stdout.write(line + (f"|{cert_field}" if cert_field else "") + "\n")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    server.stop(grace=1).wait()
    if private:
        shutil.rmtree(private, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(sys.argv[1]))
