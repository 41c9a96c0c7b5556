"""Test helpers that start real peers (an S3 server on loopback) and build tiny real models."""
