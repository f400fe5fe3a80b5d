"""meshdns: DNS-centric service discovery for service meshes."""

__version__ = "0.1.0"
