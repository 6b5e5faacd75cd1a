"""A Django project for the tests: a DRF view with jwkstash's authentication class, and plain
Django views behind jwkstash's middleware."""
