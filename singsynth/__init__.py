"""singsynth: a real-time synthesizer backend built on SING.

Data flows left to right: dataset -> train -> checkpoint -> engine <- midi/io -> audio.
"""
__version__ = "0.1.0"
