/* Time spent inside read() for a whole file, in chunks of BUF bytes, with
 * STATE_MB of memory touched at random between reads (TOUCHES_PER_BYTE
 * random lines per byte read), as replay's state traffic would evict the
 * read buffer (BENCHMARKS.md, session 22).
 *   cc -O2 read_cost.c -o read_cost && ./read_cost FILE BUF STATE_MB TOUCHES_PER_BYTE
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>
#include <stdint.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  const char*path=argv[1]; size_t buf=atol(argv[2]); size_t state_mb=atol(argv[3]); double per_byte=atof(argv[4]);
  char*b=aligned_alloc(4096,buf); size_t ss=state_mb<<20; uint64_t*st=NULL; if(ss){st=aligned_alloc(4096,ss); for(size_t i=0;i<ss/8;i++)st[i]=i;}
  int fd=open(path,O_RDONLY); double tr=0,t0=now(); uint64_t x=88172645463325252ull,sum=0; size_t total=0;
  for(;;){double a=now(); ssize_t n=read(fd,b,buf); tr+=now()-a; if(n<=0)break; total+=n;
    for(ssize_t i=0;i<n;i+=64) sum+=b[i];
    if(st){ size_t touches=(size_t)(n*per_byte); for(size_t k=0;k<touches;k++){x^=x<<13;x^=x>>7;x^=x<<17; size_t line=(x%(ss/64)); st[line*8]+=1;} }
  }
  printf("buf %zu state %zu MB: read %.3f s, total %.3f s (%zu bytes, sum %lu)\n",buf,state_mb,tr,now()-t0,total,sum);
}
