{"qwenjson_checkpoint": 2, "job": "a24478126ffc242847ef3720bf798e18143c9f563c286961421c5cc345768191"}
{"line":1,"input":"3c1dae5692a5ecc204da7a3d4ce97419","failed":0,"out":null,"errors":null}
