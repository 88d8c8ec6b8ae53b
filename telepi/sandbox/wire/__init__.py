"""The wire: MTProto transports, the auth-key handshake, encrypted sessions and the TCP server (https://core.telegram.org/mtproto)."""
