"""(being written)"""
from .module import Module

class RNNCell(Module): pass
class RNN(Module): pass
class LSTMCell(Module): pass
class LSTM(Module): pass
class GRUCell(Module): pass
class GRU(Module): pass
