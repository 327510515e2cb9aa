"""(being written)"""
from .module import Module

class MultiheadAttention(Module): pass
