"""One hive across several hosts, over NATS JetStream (docs/multihost.md).

Everything here runs only when `HIVE_NATS_URL` is set; `nats` itself is imported by
`link.py` alone, which the daemon imports only then. Each host stays whole by itself: its
agents talk only to its own hive-core, every message is committed to its own database
first, and what crosses to another host goes through JetStream with the message's key,
so a redelivery is a no-op on arrival.

- `names.py`: the subjects, streams, buckets and keys of a hive, and what travels on them.
- `link.py`: the connection, and the streams and buckets made sure of.
- `directory.py`: who runs where: name claims, each host's agents, the hosts' heartbeats.
- `outbox.py`: messages to other hosts' agents, published in id order until acknowledged.
- `inbound.py`: this host's messages from the others, committed, then acknowledged.
- `rpc.py`: the operator's requests on another host's agents and items, run there.
- `items.py`: each host's approvals, questions and operator inbox, mirrored everywhere.
- `configs.py`: agents' config repos between hosts, as git bundles in an object store.
- `nkey.py`: a host's NKey seed, and the public key the NATS server names.
- `service.py`: the pieces together, as one task of the daemon.
"""
