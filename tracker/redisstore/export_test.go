package redisstore

import "github.com/redis/go-redis/v9"

// AddHook adds h to the store's Redis client, so that tests count the
// commands, each a round trip, that an operation costs.
func (s *Store) AddHook(h redis.Hook) { s.client.AddHook(h) }
