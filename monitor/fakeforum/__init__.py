"""A local fake forum: real HTTP on 127.0.0.1 speaking the sources' APIs.

Tests use it for multi-cycle polls and injected faults; the offline demo uses
it to simulate communities. It serves responses in the shapes of the recorded
real responses (../shared/real-samples), built from an in-memory list of posts.
"""
