"""The control socket: protocol, authorization, server, node drain, CLI requests."""
