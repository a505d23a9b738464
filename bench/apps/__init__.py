"""Task modules, one per library, each with the same no-op task that counts itself."""
